"""Issue 33: an experiment's results directory belongs to one experiment and one process; a
mistake with it is one ``error:`` line (exit 2) naming ``--results-dir``, and nothing in it is
lost from view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bdps_agents.experiment as experiment_module
from bdps_agents.cli import main as cli_main
from bdps_agents.training.run_dir import run_dir_lock
from tests.cli_errors import one_error_line


@pytest.fixture
def write_grid(tiny_run, tmp_path):
    """``write_grid(name, **changes)``: an experiment file of one tiny 100-step QMIX run."""

    def _write(name: str, **changes) -> Path:
        data = {
            "name": name,
            "scenarios": ["lbf/8x8-2p-2f"],
            "methods": {"qmix": {"algorithm.name": "qmix"}},
            "seeds": [0],
            "total_steps": 100,
            "overrides": tiny_run,
            **changes,
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(json.dumps(data))  # JSON is YAML
        return path

    return _write


def test_a_results_dir_belongs_to_one_experiment(write_grid, tmp_path, capsys):
    results = tmp_path / "R"
    first = ["experiment", str(write_grid("a")), "--local", "--results-dir", str(results)]
    assert cli_main(first) == 0
    record = (results / "experiment.json").read_text()
    table = (results / "results.csv").read_text()

    # another experiment (name): its results would replace these
    other = ["experiment", str(write_grid("b")), "--local", "--results-dir", str(results)]
    line = one_error_line(capsys, cli_main(other))
    assert f"{results} holds the results of experiment 'a': give experiment 'b' another " in line
    assert "--results-dir" in line
    # the same one without some of its runs: they would vanish from results.csv and the plots
    fewer = [*first[:-2], "--results-dir", str(results), "--seeds", "1"]
    line = one_error_line(capsys, cli_main(fewer))
    assert (
        "holds 1 runs of experiment 'a' that it no longer has (e.g. lbf_8x8-2p-2f--qmix--seed0)"
        in line
    )
    assert (results / "experiment.json").read_text() == record
    assert (results / "results.csv").read_text() == table

    # an error note of an attempt before (e.g. written by another process) is not a failure
    # of the finished run
    run_dir = results / "runs" / "lbf_8x8-2p-2f--qmix--seed0"
    (run_dir / "error.txt").write_text("RunDirError: in use by another bdps run\n")
    assert cli_main(first) == 0
    assert not (run_dir / "error.txt").exists()
    assert "1 already finished" in capsys.readouterr().out


def test_two_experiments_into_one_results_dir_do_not_mix(write_grid, tmp_path, capsys):
    results = tmp_path / "R"
    argv = ["experiment", str(write_grid("a")), "--local", "--results-dir", str(results)]
    with run_dir_lock(results, holder="bdps experiment", option="--results-dir"):  # the first
        line = one_error_line(capsys, cli_main(argv))
    assert f"{results} is in use by another bdps experiment (pid " in line
    assert "wait for it to end or pick another --results-dir" in line
    assert not (results / "runs").exists()


def test_a_method_name_too_long_for_a_directory_is_refused_up_front(write_grid, tmp_path, capsys):
    results = tmp_path / "R"
    grid = write_grid("long", methods={"m" * 240: {"algorithm.name": "qmix"}})
    line = one_error_line(
        capsys, cli_main(["experiment", str(grid), "--local", "--results-dir", str(results)])
    )
    assert "would be named with 262 bytes, more than the 255 a file name may have" in line
    assert "shorten the method name" in line
    assert not results.exists()
    # a record written by an older version: `bdps plot` says the same, and leaves no temp file
    results.mkdir()
    (results / "experiment.json").write_text(grid.read_text())
    line = one_error_line(capsys, cli_main(["plot", str(results)]))
    assert "shorten the method name" in line
    assert [p.name for p in results.iterdir()] == ["experiment.json"]


def test_ctrl_c_during_an_experiment_is_one_line_with_the_command_to_continue(
    write_grid, tmp_path, capsys, monkeypatch
):
    def interrupted(spec):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment_module, "run_one", interrupted)
    argv = ["experiment", str(write_grid("a")), "--local", "--results-dir", str(tmp_path / "R")]
    assert cli_main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted: the finished runs are kept"), err
    assert err[0].endswith(
        f"continue with: bdps experiment {argv[1]} --local --results-dir {tmp_path / 'R'}"
    )
