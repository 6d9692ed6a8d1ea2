"""No lost runs and honest budgets (issue 19): a log directory is never replaced without
``--overwrite``, one run writes to it at a time (a lock that a kill -9 releases), a grid goes on
past a failed run, the budget is the one printed, and user mistakes end in one line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bdps_agents import adapters, cli, training
from bdps_agents.adapters import BUILTIN_ADAPTERS, AdapterRegistry, register_adapter
from bdps_agents.config import ConfigError
from bdps_agents.experiment import FAILURES_NAME, GridRunError, is_finished, run_experiment
from bdps_agents.grid import GridConfig, expand
from bdps_agents.presets import load_config
from bdps_agents.training import EpochPlan, RunDirError, default_logdir, run_dir_lock, train
from tests.adapters.faulty_env import CrashingLBF


@pytest.fixture(scope="module")
def tiny_settings(tiny_run):
    """The tiny run's dotted overrides, without a progress bar."""
    return {**tiny_run, "training.progress": False}


@pytest.fixture
def tiny(tiny_settings):
    """``tiny(steps=100, *more)``: the tiny run on LBF 8x8 for ``steps`` steps, ``more``
    ("key=value") replacing its entries (a key given twice is an error)."""

    def make(steps: int = 100, *more: str):
        settings = {**tiny_settings, "training.total_steps": steps}
        settings.update(item.split("=", 1) for item in more)
        items = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items()]
        return load_config("lbf/8x8-2p-2f", items)

    return make


def csv_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


# -- a run directory is never replaced silently --------------------------------------------------
def test_a_second_run_into_a_run_directory_is_refused_and_changes_nothing(tiny, tmp_path):
    train(tiny(), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(RunDirError, match=r"already holds a run .*--resume .*--overwrite"):
        train(tiny(200), tmp_path)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before


def test_overwrite_replaces_the_whole_run(tiny, tmp_path):
    train(tiny(), tmp_path)
    old_events = set(tmp_path.glob("events.out.tfevents.*"))
    time.sleep(1.1)  # TensorBoard names event files by the second
    train(tiny(200), tmp_path, overwrite=True)
    assert not old_events & set(tmp_path.glob("events.out.tfevents.*"))  # no mix of two runs
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    assert json.loads((tmp_path / "config.json").read_text())["training"]["total_steps"] == 200
    rows = list(csv.reader((tmp_path / "metrics.csv").open()))
    assert sum(row[0] == "final" and row[2] == "greedy_return" for row in rows) == 1


def test_a_config_that_cannot_be_built_leaves_the_run_as_it_was(tiny, tmp_path):
    train(tiny(), tmp_path)
    config = (tmp_path / "config.json").read_bytes()
    # 3 roles for 2 agents: refused when the env's size is known, after the overwrite check
    bad = tiny(100, "algorithm.name=bdps", "bdps.n_roles=3")
    with pytest.raises(ConfigError, match="exceeds the number of agents"):
        train(bad, tmp_path, overwrite=True)
    assert (tmp_path / "config.json").read_bytes() == config
    fresh = tmp_path / "fresh"
    with pytest.raises(ConfigError):
        train(bad, fresh)
    assert not (fresh / "config.json").exists()


def test_the_default_log_directory_names_the_method(tiny):
    qmix, bdps = tiny(), tiny(100, "algorithm.name=bdps")
    assert default_logdir(qmix).name == "lbf_8x8-2p-2f-qmix-seed0"
    assert default_logdir(bdps).name == "lbf_8x8-2p-2f-bdps-seed0"
    single = tiny(100, "algorithm.name=bdps", "bdps.levels=1")
    assert default_logdir(single).name == "lbf_8x8-2p-2f-bdps-individual-seed0"
    assert default_logdir(tiny(100, "network.sharing=none")).name == "lbf_8x8-2p-2f-qmix-none-seed0"


def test_resume_and_overwrite_exclude_each_other(tiny, tmp_path):
    with pytest.raises(RunDirError, match="--resume .* --overwrite"):
        train(tiny(), tmp_path, resume=True, overwrite=True)


# -- one writer at a time ------------------------------------------------------------------------
def test_a_run_directory_in_use_is_refused(tiny, tmp_path):
    in_use = rf"in use by another bdps run \(pid {os.getpid()}\)"
    with run_dir_lock(tmp_path), pytest.raises(RunDirError, match=in_use):
        train(tiny(), tmp_path)
    train(tiny(), tmp_path)  # released


def test_the_lock_of_a_killed_run_is_released(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time, pathlib; from bdps_agents.training import run_dir_lock\n"
                "with run_dir_lock(pathlib.Path(sys.argv[1])):\n"
                "    print('locked', flush=True); time.sleep(60)"
            ),
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=rf"pid {holder.pid}"), run_dir_lock(tmp_path):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        holder.kill()
    with run_dir_lock(tmp_path):  # no stale lock
        pass


def test_an_unusable_log_directory_is_one_line(tiny, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RunDirError, match=r"cannot use .*file/run as the log directory"):
        train(tiny(), blocker / "run")


# -- grids ---------------------------------------------------------------------------------------
@pytest.fixture
def crashing_adapter(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(adapters, "_registry", AdapterRegistry(dict(BUILTIN_ADAPTERS)))
    register_adapter("crashing-lbf", CrashingLBF)
    return "crashing-lbf"


@pytest.fixture
def make_grid(tiny_settings):
    """``make_grid(tmp_path, **changes)``: a three-run grid of tiny runs."""

    def _grid(tmp_path: Path, **changes) -> GridConfig:
        data = {
            "name": "tiny",
            "results_dir": str(tmp_path / "results"),
            "scenarios": ["lbf/8x8-2p-2f"],
            "methods": {
                "a": {"network.sharing": "full"},
                "b": {},
                "c": {"network.sharing": "none"},
            },
            "seeds": [0],
            "total_steps": 100,
            "overrides": tiny_settings,
            **changes,
        }
        return GridConfig.model_validate(data)

    return _grid


def test_a_grid_goes_on_past_a_failed_run_and_reports_it(
    make_grid, tmp_path, crashing_adapter, capsys
):
    crash = {"env.adapter": crashing_adapter, "env.kwargs": {"task": "8x8-2p-2f", "fail_at": 5}}
    grid = make_grid(tmp_path, methods={**make_grid(tmp_path).methods, "b": crash})
    with pytest.raises(GridRunError, match=r"1 of 3 runs failed .*--b--seed0: RuntimeError: "):
        run_experiment(grid, local=True)
    out = capsys.readouterr().out
    assert "FAILED: RuntimeError: simulated simulator crash" in out
    specs = {s.method: s for s in expand(grid)}
    assert is_finished(specs["a"]) and is_finished(specs["c"])  # the run after it ran too
    root = Path(grid.results_dir)
    methods = {row["method"] for row in csv.DictReader((root / "results.csv").open())}
    assert methods == {"a", "c"}
    failures = list(csv.DictReader((root / FAILURES_NAME).open()))
    assert [f["method"] for f in failures] == ["b"] and "simulated" in failures[0]["error"]

    # the CLI exits non-zero; a second start retries only the failed run
    (tmp_path / "grid.yaml").write_text(json.dumps(grid.model_dump(mode="json")))
    assert cli.main(["experiment", str(tmp_path / "grid.yaml"), "--local"]) == 1
    out, err = capsys.readouterr()
    assert "3 runs (2 already finished," in out
    assert err.startswith("error: 1 of 3 runs failed") and err.count("\n") == 1


def test_a_scenario_given_twice_is_refused(make_grid, tmp_path):
    with pytest.raises(ValueError, match=r"scenarios must be distinct.*lbf/8x8-2p-2f"):
        make_grid(tmp_path, scenarios=["lbf/8x8-2p-2f", "lbf/8x8-2p-2f"])


# -- budgets -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("total", "interval", "collect", "done", "epochs", "expected"),
    [
        (2000, 10_000, 56, (0, 0), 1, 2016),  # was one whole test interval: 10,024
        (2000, 1_000_000, 56, (0, 0), 1, 2016),  # was an epoch longer than the budget
        (25_000, 10_000, 56, (0, 0), 3, 25_032),
        (100_000, 10_000, 50, (0, 0), 10, 100_000),
        (50_000, 10_000, 56, (25_032, 3), 3, 50_064),  # resumed with a larger budget
        (25_000, 10_000, 56, (25_032, 3), 0, 25_032),  # finished: nothing left
    ],
)
def test_the_epoch_plan_meets_the_budget_within_a_collect_step_per_epoch(
    total, interval, collect, done, epochs, expected
):
    plan = EpochPlan.of(total, interval, collect, done_steps=done[0], done_epochs=done[1])
    assert (plan.epochs_left, plan.total) == (epochs, expected)
    assert plan.max_epochs == done[1] + epochs
    assert plan.epoch_steps % collect == 0 and plan.epoch_steps <= -(-interval // collect) * collect
    assert 0 <= plan.total - total < max(epochs, 1) * collect or plan.total == done[0]


def test_train_stops_at_the_planned_step_and_says_so(tiny, tmp_path, capsys):
    cfg = tiny(300, "training.test_interval=1000000", "training.progress=true")
    result = train(cfg, tmp_path)
    out = capsys.readouterr().out
    plan = EpochPlan.of(300, 1_000_000, 20)
    assert f"budget: {plan.total:,} env steps of training" in out and "warm-up" in out
    rows = list(csv.reader((tmp_path / "metrics.csv").open()))
    warm = result.env_steps - plan.total
    assert 0 < warm < 200  # two warm-up episodes of at most 50 steps each ... per env
    tests = [int(r[1]) for r in rows if r[0] == "test" and r[2] == "greedy_return"]
    assert tests and max(tests) == result.env_steps  # one epoch, not 1,000,000 steps


def test_test_envs_do_not_outnumber_test_episodes(tiny):
    cfg = tiny(100, "env.num_test_envs=8", "training.test_episodes=3")
    run = training.build_run(cfg)
    try:
        assert run.test_envs.env_num == 3
    finally:
        run.close()


# -- one line for user mistakes -----------------------------------------------------------------
def test_ctrl_c_names_the_checkpoint_and_the_resume_command(tmp_path, monkeypatch, capsys):
    logdir = tmp_path / "run"
    argv = ["train", "--scenario", "lbf/8x8-2p-2f", "--steps", "100", "--logdir", str(logdir)]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    assert cli.main(argv) == 130
    assert "before the first checkpoint" in capsys.readouterr().err
    logdir.mkdir()
    (logdir / "checkpoint.pt").write_bytes(b"x")
    assert cli.main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err == (
        f"interrupted: the last checkpoint is {logdir / 'checkpoint.pt'}; continue with: "
        f"bdps train --scenario lbf/8x8-2p-2f --steps 100 --logdir {logdir} --resume"
    )


def test_debug_shows_the_traceback(monkeypatch):
    with pytest.raises(ConfigError):
        cli.main(["--debug", "train", "--scenario", "no/such-scenario"])
    assert cli.main(["train", "--scenario", "no/such-scenario"]) == 2


def _results(root: Path, rows: list[list[str]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "results.csv").open("w", newline="") as f:
        csv.writer(f).writerows(
            [["run_id", "scenario", "method", "seed", "env_step", "metric", "value"], *rows]
        )


@pytest.mark.parametrize(
    ("rows", "argv", "message"),
    [
        ([], [], r"holds no results"),
        ([["r", "s", "m", "0", "x", "test/greedy_return", "1"]], [], r"line 2: column 'env_step'"),
        ([["r", "s", "m", "0", "10", "test/greedy_return", "1"]], ["--max-step", "nan"], None),
    ],
)
def test_plot_mistakes_are_one_line(tmp_path, capsys, rows, argv, message):
    root = tmp_path / "results"
    _results(root, rows)
    if message is None:  # argparse refuses the value itself
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["plot", str(root), *argv])
        assert exit_info.value.code == 2
        assert "finite env step" in capsys.readouterr().err
        return
    assert cli.main(["plot", str(root), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert __import__("re").search(message, err)


def test_a_broken_experiment_record_is_one_line(tmp_path, capsys):
    root = tmp_path / "results"
    _results(root, [["r", "s", "m", "0", "10", "test/greedy_return", "1"]])
    (root / "experiment.json").write_text("{not json")
    assert cli.main(["plot", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "experiment.json is not a readable experiment record" in err


@pytest.mark.requires(module="jaxmarl", extra="smax")
def test_a_keyword_the_simulator_refuses_is_one_line(tmp_path, capsys):
    # SMAC/SMAX factories pass StarCraft2Env keywords through: checked when the env is built
    logdir = tmp_path / "run"
    argv = ["train", "--scenario", "smax/3m", "--set", "env.kwargs.map_nme=3m", "--steps", "10"]
    assert cli.main([*argv, "--logdir", str(logdir)]) == 2
    assert not logdir.exists()  # made for the lock, removed again: the run never started
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "do not fit adapter 'smax'" in err and "map_nme" in err
