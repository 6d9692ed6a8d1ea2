"""Experiment grids: validation, a 2x2 grid on local Ray, the tidy CSV and its figures."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from bdps_agents.algorithms import run_label
from bdps_agents.config import ConfigError
from bdps_agents.experiment import RESULTS_HEADER, run_experiment
from bdps_agents.grid import GridConfig, expand, experiment_names, load_grid
from bdps_agents.plotting import plot_results


@pytest.fixture
def make_grid(tiny_run):
    """``make_grid(tmp_path, **changes)``: a grid of four tiny runs (QMIX and BDPS, two seeds)."""

    def _grid(tmp_path: Path, **changes) -> GridConfig:
        data = {
            "name": "tiny",
            "results_dir": str(tmp_path / "results"),
            "scenarios": ["lbf/8x8-2p-2f"],
            "methods": {"qmix": {"algorithm.name": "qmix"}, "bdps": {"algorithm.name": "bdps"}},
            "seeds": [0, 1],
            "total_steps": 200,
            "overrides": tiny_run,
            **changes,
        }
        return GridConfig.model_validate(data)

    return _grid


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.requires(module="ray", extra="ray")
def test_grid_on_local_ray_writes_tidy_csv_and_figures(make_grid, tmp_path: Path, capsys) -> None:
    grid = make_grid(tmp_path)
    root = run_experiment(grid)
    out = capsys.readouterr().out
    assert "experiment tiny: 4 runs (0 already finished," in out and "[4/4]" in out
    rows = _rows(root / "results.csv")
    assert list(rows[0]) == RESULTS_HEADER
    cells = {(r["method"], r["seed"]) for r in rows}
    assert cells == {("qmix", "0"), ("qmix", "1"), ("bdps", "0"), ("bdps", "1")}
    finals = [r for r in rows if r["metric"] == "final/greedy_return"]
    assert len(finals) == 4 and all(int(r["env_step"]) >= 200 for r in finals)
    assert any(r["metric"] == "update/delta_h" and r["method"] == "bdps" for r in rows)
    assert not any(r["metric"] == "update/delta_h" and r["method"] == "qmix" for r in rows)
    for run_id in {r["run_id"] for r in rows}:
        assert (root / "runs" / run_id / "checkpoint.pt").is_file()
        assert any((root / "runs" / run_id).glob("events.out.tfevents.*"))

    written = plot_results(root)
    assert root / "plots" / "returns.png" in written
    assert all(p.stat().st_size > 10_000 for p in written)

    # a second start finds every run finished: nothing is retrained, the CSV is rebuilt
    stamp = (root / "runs" / finals[0]["run_id"] / "checkpoint.pt").stat().st_mtime_ns
    run_experiment(grid)
    assert "4 runs (4 already finished," in capsys.readouterr().out
    assert (root / "runs" / finals[0]["run_id"] / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert len(_rows(root / "results.csv")) == len(rows)


def test_local_mode_runs_sequentially_and_cli_plots(make_grid, tmp_path: Path, capsys) -> None:
    from bdps_agents.cli import main as cli_main

    grid = make_grid(tmp_path, methods={"qmix": {"network.sharing": "full"}}, seeds=[3])
    root = run_experiment(grid, local=True)
    out = capsys.readouterr().out
    assert "[1/1] lbf_8x8-2p-2f--qmix--seed3" in out
    # before training: the budget and its rough duration (200 steps at QMIX's LBF rate)
    budget = "budget: 1 runs, 200 env steps; to train now: 1 runs, at most 200 env steps, ≈ 1 min"
    assert budget in out and out.index("budget:") < out.index("[1/1]")
    rows = _rows(root / "results.csv")
    assert {r["seed"] for r in rows} == {"3"}
    # `bdps plot` re-merges results.csv from the runs (so a running experiment can be plotted)
    (root / "results.csv").unlink()
    assert cli_main(["plot", str(root)]) == 0
    assert _rows(root / "results.csv") == rows
    assert (root / "plots" / "returns.png").is_file()
    assert "| lbf/8x8-2p-2f | qmix | 1 |" in capsys.readouterr().out
    # --max-step: nothing was logged at step 0 (tests follow the warm-up): one line, exit 2
    assert cli_main(["plot", str(root), "--max-step", "0", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "holds no results up to env step 0" in err and err.count("\n") == 1


def _finals(root: Path) -> list[dict[str, str]]:
    return [r for r in _rows(root / "results.csv") if r["metric"] == "final/greedy_return"]


def test_a_raised_budget_trains_finished_runs_on_and_other_settings_are_refused(
    make_grid, tiny_run, tmp_path: Path, capsys
) -> None:
    one = {"methods": {"qmix": {"algorithm.name": "qmix"}}, "seeds": [0]}
    grid = make_grid(tmp_path, **one)
    root = run_experiment(grid, local=True)
    (first,) = _finals(root)
    capsys.readouterr()
    # the budget grows: the finished run resumes to it, keeping one final result
    run_experiment(grid.model_copy(update={"total_steps": 400}), local=True)
    assert "1 runs (0 already finished, 1 to resume)" in capsys.readouterr().out
    (grown,) = _finals(root)
    assert int(grown["env_step"]) >= 400 > int(first["env_step"])
    # a smaller budget, or another setting, would mix results of two settings: refused
    # before anything is written
    stamp = (root / "experiment.json").stat().st_mtime_ns
    with pytest.raises(ConfigError, match=r"total_steps=400, more than the 200.*--max-step 200"):
        run_experiment(grid, local=True)
    other_lr = make_grid(tmp_path, **one, overrides={**tiny_run, "algorithm.lr": 0.123})
    with pytest.raises(ConfigError, match=r"algorithm.lr=.*asks 0.123.*--results-dir"):
        run_experiment(other_lr, local=True)
    assert (root / "experiment.json").stat().st_mtime_ns == stamp
    # in another results directory the same grid starts afresh
    other = run_experiment(grid, local=True, results_dir=tmp_path / "other")
    assert int(_finals(other)[0]["env_step"]) < 400


def test_cli_steps_and_seeds_set_the_grid(tmp_path: Path, capsys) -> None:
    from bdps_agents.cli import build_parser, main
    from bdps_agents.cli_experiment import _grid_items

    args = build_parser().parse_args(["reproduce", "lbf-ablation", "--steps", "5000"])
    args.seeds = [4, 7]
    grid = load_grid("lbf-ablation").with_overrides(_grid_items(args))
    assert grid.total_steps == 5000 and grid.seeds == [4, 7]
    specs = expand(grid)
    assert {s.config.training.total_steps for s in specs} == {5000}
    assert {s.seed for s in specs} == {4, 7}
    for bad, message in [
        (["--steps", "0"], "--steps must be a positive number"),
        (["--seeds", "-1"], "--seed must be an integer from 0"),
    ]:
        assert main(["reproduce", "lbf-ablation", "--local", *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["reproduce", "lbf-ablation", "--seeds", "0,x"])
    assert "comma-separated integers" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"seeds": [0, 0]}, "seeds"),
        ({"seeds": []}, "seeds"),
        ({"methods": {}}, "methods"),
        ({"methods": {"a--b": {}}}, "methods"),
        ({"total_steps": 0}, "total_steps"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_grid_is_refused_naming_the_field(make_grid, tmp_path: Path, changes, field) -> None:
    path = tmp_path / "grid.yaml"
    data = make_grid(tmp_path).model_dump(mode="json")
    data.update(changes)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=field):
        load_grid(path)


def test_bad_cell_is_refused_before_anything_runs(make_grid, tmp_path: Path) -> None:
    grid = make_grid(tmp_path, methods={"typo": {"network.sharingg": "full"}})
    with pytest.raises(ConfigError, match=r"(?s)typo.*network.sharingg"):
        expand(grid)
    assert not (tmp_path / "results").exists()


def test_shipped_experiments_expand() -> None:
    assert "lbf-ablation" in experiment_names()
    grid = load_grid("lbf-ablation")
    specs = expand(grid)
    assert len(specs) == 12
    labels = {run_label(s.config) for s in specs}
    assert labels == {"bdps", "bdps-individual", "qmix", "qmix-none"}
    assert {s.config.env.kwargs["task"] for s in specs} == {"15x15-4p-5f"}
    with pytest.raises(ConfigError, match="neither a file nor a shipped experiment"):
        load_grid("no-such-experiment")


@pytest.mark.parametrize("name", experiment_names())
def test_every_shipped_experiment_validates_every_run(name: str) -> None:
    grid = load_grid(name)
    specs = expand(grid)
    assert len(specs) == len(grid.scenarios) * len(grid.methods) * len(grid.seeds)
    # a method's overrides reach its runs: e.g. the algorithm it names
    for spec in specs:
        named = grid.methods[spec.method].get("algorithm", {}).get("name")
        assert named is None or spec.config.algorithm.name == named


def test_the_paper_comparisons_run_the_papers_methods_at_its_budgets() -> None:
    fig3 = expand(load_grid("paper-fig3-smax"))
    assert {run_label(s.config) for s in fig3} == {
        "qmix",
        "qmix-none",
        "cds",
        "eoi",
        "rode",
        "seps",
        "bdps",
    }
    budget = {s.scenario: s.config.training.total_steps for s in fig3}
    assert budget["smax/5m_vs_6m"] == 2_000_000 and budget["smax/27m_vs_30m"] == 5_000_000
    fig4 = expand(load_grid("paper-fig4-sharing"))
    assert {run_label(s.config) for s in fig4} == {"qmix", "qmix-none", "bdps-individual", "bdps"}
    assert {s.seed for s in fig4} == set(range(3))
    variant = {s.method: s.config.bdps for s in fig4 if s.config.algorithm.name == "bdps"}
    assert variant["bdps-partition-sticky"].group_choice == "partition"
    assert variant["bdps-partition-sticky"].role_switch_margin == 1.0
    assert variant["bdps-bilevel"].group_choice == "argmax"  # the paper's, the default


@pytest.mark.requires(module="ray", extra="ray")
def test_ray_vector_env_samples_for_the_collector(config_with) -> None:
    import ray
    from tianshou.algorithm.algorithm_base import policy_within_training_step

    from bdps_agents.training import build_run

    cfg = config_with(
        {"env": {"adapter": "lbf", "kwargs": {"task": "6x6-2p-1f"}}},
        env={"vector_env": "ray", "num_train_envs": 2, "num_test_envs": 2},
        replay={"capacity_episodes": 20, "batch_episodes": 4, "warmup_episodes": 2},
        training={"progress": False},
    )
    run = build_run(cfg)
    try:
        assert type(run.train_envs).__name__ == "RayVectorEnv"
        with policy_within_training_step(run.policy):
            run.train_collector.reset()
            stats = run.train_collector.collect(n_episode=4)
            assert stats.n_collected_episodes == 4 and len(run.buffer) == stats.n_collected_steps
            assert run.algorithm.update(run.buffer, 4).loss > 0
    finally:
        run.close()
        ray.shutdown()
