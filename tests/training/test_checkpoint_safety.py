"""Issue 19: opening a checkpoint runs no code, and every user mistake with a checkpoint or the
``eval``/``render``/``--resume`` arguments gets one ``error:`` line (exit code 2), not a
traceback."""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import bdps_agents.training.checkpoint as checkpoint_file
import bdps_agents.training.evaluation as evaluation_module
from bdps_agents import training
from bdps_agents.cli import main as cli_main
from bdps_agents.experiment import run_experiment
from bdps_agents.grid import GridConfig
from bdps_agents.training import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    build_run,
    evaluate,
    load_checkpoint,
    restore_run,
    train,
    write_checkpoint,
)
from tests.cli_errors import one_error_line


@pytest.fixture(scope="module")
def small(small_lbf):
    """The tiny LBF run, 300 steps in one epoch."""
    return {
        **copy.deepcopy(small_lbf),
        "training": {
            "progress": False,
            "test_episodes": 2,
            "test_interval": 300,
            "log_interval": 100,
            "total_steps": 300,
        },
    }


class Evil:
    """Unpickles as a call of ``os.system``: what a crafted checkpoint can smuggle in."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def finished(small, config_with, tmp_path_factory):
    """A finished 300-step run (one epoch, its checkpoint, a final row) and its scenario file."""
    root = tmp_path_factory.mktemp("finished")
    cfg = config_with(small)
    scenario = root / "tiny.yaml"
    scenario.write_text(json.dumps(cfg.model_dump(mode="json")))  # JSON is YAML
    train(cfg, root / "run")
    return root / "run", scenario


def _copy_run(finished, tmp_path: Path) -> Path:
    logdir = tmp_path / "run"
    shutil.copytree(finished[0], logdir)
    return logdir


def _with_header(payload: bytes, version: int) -> bytes:
    """A checksummed checkpoint file as ``write_checkpoint`` of format ``version`` writes it."""
    digest = hashlib.sha256(payload).digest()
    return (
        checkpoint_file._MAGIC
        + checkpoint_file._HEADER.pack(version, len(payload), digest)
        + payload
    )


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# ------------------------------------------------------------------ 0: no code from a file
@pytest.mark.parametrize("wrapping", ["bare", "checksummed", "nested in a real checkpoint"])
@pytest.mark.parametrize("command", ["eval", "render", "resume"])
def test_a_crafted_checkpoint_runs_no_code(finished, tmp_path, capsys, wrapping, command):
    marker = tmp_path / "PWNED"
    logdir = tmp_path / "run"
    logdir.mkdir()
    path = logdir / "checkpoint.pt"
    if wrapping == "bare":
        torch.save({"config": Evil(marker), "algorithm": {}}, path)
    elif wrapping == "checksummed":  # a crafted payload carries a valid SHA-256
        write_checkpoint(path, {"config": Evil(marker), "algorithm": {}})
    else:  # everything right but one random state
        _, data = load_checkpoint(finished[0] / "checkpoint.pt")
        data["rng"]["python"] = Evil(marker)
        write_checkpoint(path, data)
    argv = {
        "eval": ["eval", "--checkpoint", str(path), "--episodes", "1"],
        "render": ["render", "--checkpoint", str(path), "--out", str(tmp_path / "e.gif")],
        "resume": ["train", "--scenario", str(finished[1]), "--logdir", str(logdir), "--resume"],
    }[command]
    line = one_error_line(capsys, cli_main(argv))
    assert not marker.exists(), "loading the checkpoint ran the file's code"
    assert re.search(
        rf"refusing to load {re.escape(str(path))}: it holds a \S+\.system object", line
    )
    assert "only tensors and plain data" in line


def test_new_checkpoints_hold_only_tensors_and_plain_data(finished):
    raw = (finished[0] / "checkpoint.pt").read_bytes()
    version, length, _ = checkpoint_file._HEADER.unpack_from(raw, len(checkpoint_file._MAGIC))
    assert version == CHECKPOINT_FORMAT == 3
    payload = raw[len(checkpoint_file._MAGIC) + checkpoint_file._HEADER.size :]
    assert len(payload) == length
    # torch's own safe loader, nothing allow-listed: what a user can do by hand
    data = torch.load(io.BytesIO(payload), weights_only=True)
    kind, key, *_ = data["rng"]["numpy"]
    assert kind == "MT19937" and isinstance(key, list) and len(key) == 624


def _format2_file(finished, path: Path, **changes) -> dict:
    """The fixture's checkpoint rewritten as format 2 wrote it: numpy's legacy generator state
    as an ndarray (which weights_only=True does not read by default)."""
    _, data = load_checkpoint(finished[0] / "checkpoint.pt")
    np.random.seed(123)
    data["rng"]["numpy"] = np.random.get_state()
    data.update(changes)
    path.write_bytes(_with_header(_torch_bytes({**data, "format_version": 2}), 2))
    return data


def test_format_2_checkpoints_still_load_evaluate_and_restore(finished, tmp_path):
    path = tmp_path / "v2.pt"
    data = _format2_file(finished, path)
    with pytest.raises(Exception, match="Weights only load failed"):  # needs the allow-list
        head = len(checkpoint_file._MAGIC) + checkpoint_file._HEADER.size
        torch.load(io.BytesIO(path.read_bytes()[head:]), weights_only=True)
    cfg, loaded = load_checkpoint(path)
    _kind, key, pos, *_ = loaded["rng"]["numpy"]
    assert key == data["rng"]["numpy"][1].tolist() and pos == data["rng"]["numpy"][2]
    run = build_run(cfg)
    try:
        restore_run(run, loaded, path)
        np.random.seed(123)
        expected = np.random.random(3)
        restore_run(run, loaded, path)
        assert np.array_equal(np.random.random(3), expected)  # the saved legacy state is back
    finally:
        run.close()
    result = training.evaluate(path, episodes=2)
    assert np.isfinite(result["return_mean"])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            np.zeros(3, dtype=np.uint32),
            (
                r"refusing to load {path} \(format 2\): it holds a numpy ndarray at /eps_training, "
                r"where bdps-agents never wrote one"
            ),
        ),
        (np.array([0.5]), r"refusing to load {path}: it holds a numpy\.dtypes\.Float64DType "),
        (np.float64(0.5), r"refusing to load {path}: it holds a numpy\S+scalar object"),
    ],
)
def test_a_format_2_file_with_numpy_elsewhere_is_refused(finished, tmp_path, value, message):
    # format 2 is read with numpy's arrays allowed, for its random state only
    path = tmp_path / "v2.pt"
    _format2_file(finished, path, eps_training=value)
    with pytest.raises(CheckpointError, match=message.format(path=re.escape(str(path)))) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ 10: mismatched checkpoints
def _handmade(finished, tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """A checkpoint that loads but does not fit (in a logdir of its own) and a scenario file
    with its config (so that --resume accepts the config)."""
    cfg, data = load_checkpoint(finished[0] / "checkpoint.pt")
    conf = cfg.model_dump(mode="json")
    csv_bytes = data["progress"]["csv_bytes"]
    if kind == "empty algorithm":
        data = {"config": conf, "algorithm": {}, "progress": data["progress"]}
    elif kind == "bigger network":
        conf["network"]["hidden_dim"] = 32  # the weights stay those of hidden_dim 16
        data["config"] = conf
    elif kind == "Adam moment of another shape":
        moments = data["algorithm"]["_optimizers"][0]["state"][0]
        moments["exp_avg"] = torch.zeros(3)
    elif kind == "garbled progress":
        data["progress"] = {"epoch": "one"}
    elif kind == "garbled random state":
        data["rng"]["numpy"] = ("MT19937", [1, 2, 3], 0, 0, 0.0)
    logdir = tmp_path / "bad"
    logdir.mkdir()
    # metrics.csv as it was at the checkpoint (no final rows): a run that is not finished
    metrics = (finished[0] / "metrics.csv").read_bytes()
    (logdir / "metrics.csv").write_bytes(metrics[:csv_bytes])
    write_checkpoint(logdir / "checkpoint.pt", data)
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(json.dumps(conf))
    return logdir, scenario


MISFIT = r"checkpoint {path} does not fit the networks its config builds \(.*\): "


@pytest.mark.parametrize(
    ("kind", "commands", "message"),
    [
        (
            "empty algorithm",
            ["eval", "render"],
            MISFIT + r"missing policy\.agent\.\S+; .*; and \d+ more$",
        ),
        (
            "bigger network",
            ["eval", "render", "resume"],
            MISFIT
            + r"policy\.agent\.\S+ is \[1, \d+, 16\] in the file, \[1, \d+, 32\] in the model",
        ),
        (
            "Adam moment of another shape",
            ["eval", "render", "resume"],
            MISFIT + r"_optimizers\[0\] exp_avg of parameter 0 is \[3\], the parameter \[",
        ),
        (
            "garbled progress",
            ["resume"],
            r"cannot resume from {path}: its progress note lacks or garbles epoch, env_step",
        ),
        (
            "garbled random state",
            ["resume"],
            r"checkpoint {path} holds an unusable learner state .*random generators\): \w+",
        ),
    ],
)
def test_a_checkpoint_that_does_not_fit_gets_one_line(
    finished, tmp_path, capsys, kind, commands, message
):
    logdir, scenario = _handmade(finished, tmp_path, kind)
    path = logdir / "checkpoint.pt"
    pattern = message.format(path=re.escape(str(path)))
    for command in commands:
        argv = {
            "eval": ["eval", "--checkpoint", str(path), "--episodes", "1"],
            "render": ["render", "--checkpoint", str(path), "--out", str(tmp_path / "e.gif")],
            "resume": ["train", "--scenario", str(scenario), "--logdir", str(logdir), "--resume"],
        }[command]
        line = one_error_line(capsys, cli_main(argv))
        assert re.search(pattern, line), (command, line)
    assert not (tmp_path / "e.gif").exists()


# ------------------------------------------------------------------ 10: eval/render arguments
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--episodes", "0"], r"--episodes must be a positive number of episodes, got 0"),
        (["eval", "--episodes", "-3"], r"--episodes must be a positive number of episodes, got -3"),
        (["eval", "--seed", "-5"], r"--seed must be an integer from 0 to 4294967295, got -5"),
        (["eval", "--seed", str(2**32)], r"--seed must be an integer from 0 to 4294967295"),
        (["render", "--seed", "-5"], r"--seed must be an integer from 0 to 4294967295, got -5"),
        (
            ["render", "--out", "{tmp}/x.txt"],
            (
                r"--out: cannot write an animation to \S+/x\.txt: use a file name ending in "
                r"\.gif, \.png, \.apng"
            ),
        ),
        (["render", "--max-steps", "0"], r"--max-steps must be a positive number of steps"),
        (["render", "--max-steps", "-2"], r"--max-steps must be a positive number of steps"),
    ],
)
def test_bad_eval_and_render_arguments_get_one_line(
    finished, tmp_path, capsys, monkeypatch, argv, message
):
    # checked before the checkpoint is even opened (render: before the episode is played)
    def no_loading(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before the arguments were checked")

    monkeypatch.setattr(training, "load_checkpoint", no_loading)  # render reads it there
    monkeypatch.setattr(evaluation_module, "load_checkpoint", no_loading)  # eval: evaluate()
    argv = [a.format(tmp=tmp_path) for a in argv]
    argv += ["--checkpoint", str(finished[0] / "checkpoint.pt")]
    if argv[0] == "render" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "e.gif")]
    line = one_error_line(capsys, cli_main(argv))
    assert re.search(message, line), line
    assert capsys.readouterr().out == "" and list(tmp_path.iterdir()) == []


def test_render_writes_every_extension_it_accepts(finished, tmp_path):
    from bdps_agents.render import output_extensions, render_episode

    assert {".gif", ".png"} <= set(output_extensions())
    for ext in output_extensions():
        out = render_episode(finished[0] / "checkpoint.pt", tmp_path / f"e{ext}", max_steps=2)
        assert out.stat().st_size > 0, ext


# ------------------------------------------------------------------ 6: --resume of a finished run
def _greedy_test_steps(logdir: Path) -> list[int]:
    with (logdir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [int(r["step"]) for r in rows if (r["scope"], r["metric"]) == ("test", "greedy_return")]


def test_resume_refuses_a_finished_run_and_says_how_to_continue(
    small, config_with, finished, tmp_path, capsys
):
    logdir = _copy_run(finished, tmp_path)
    before = {p.name: p.read_bytes() for p in logdir.iterdir() if p.is_file()}
    argv = ["train", "--scenario", str(finished[1]), "--logdir", str(logdir), "--resume"]
    line = one_error_line(capsys, cli_main(argv))
    tests_before = _greedy_test_steps(logdir)
    match = re.search(
        rf"cannot resume {re.escape(str(logdir))}: the run is finished \(.*\); to train it "
        r"further, resume with --steps \(training.total_steps\) greater than (\d+)$",
        line,
    )
    assert match, line
    # nothing was touched: not the final result, not the checkpoint, not config.json
    assert {p.name: p.read_bytes() for p in logdir.iterdir() if p.is_file()} == before
    with pytest.raises(CheckpointError, match="the run is finished"):
        train(config_with(small), logdir, resume=True)

    # the advice works: one more epoch, a new final result
    steps = int(match.group(1)) + 1
    assert cli_main([*argv, "--steps", str(steps)]) == 0
    tests = _greedy_test_steps(logdir)
    assert len(tests) == len(tests_before) + 1 and tests[-1] > tests_before[-1]
    rows = list(csv.DictReader((logdir / "metrics.csv").open()))
    finals = [int(r["step"]) for r in rows if r["scope"] == "final"]
    assert finals and min(finals) >= tests[-1]  # the new final result, after the new epoch
    _, data = load_checkpoint(logdir / "checkpoint.pt")
    assert data["progress"]["epoch"] == 2 and data["progress"]["env_step"] >= steps


def test_resume_after_the_last_epoch_but_before_the_final_evaluation_finishes_the_run(
    small, config_with, finished, tmp_path
):
    # killed after the last epoch's checkpoint, before the final rows: not finished
    logdir = _copy_run(finished, tmp_path)
    _, data = load_checkpoint(logdir / "checkpoint.pt")
    metrics = logdir / "metrics.csv"
    metrics.write_bytes(metrics.read_bytes()[: data["progress"]["csv_bytes"]])
    assert "final," not in metrics.read_text()
    result = train(config_with(small), logdir, resume=True)
    assert np.isfinite(result.final_greedy_return)
    assert any(line.startswith("final,") for line in metrics.read_text().splitlines())


def test_experiment_still_skips_finished_runs(tiny_run, tmp_path, capsys):
    grid = GridConfig.model_validate(
        {
            "name": "tiny",
            "results_dir": str(tmp_path / "results"),
            "scenarios": ["lbf/8x8-2p-2f"],
            "methods": {"qmix": {"network.sharing": "full"}},
            "seeds": [0],
            "total_steps": 100,
            "overrides": tiny_run,
        }
    )
    root = run_experiment(grid, local=True)
    ckpt = next((root / "runs").glob("*/checkpoint.pt"))
    stamp = ckpt.stat().st_mtime_ns
    capsys.readouterr()
    run_experiment(grid, local=True)
    assert "1 runs (1 already finished," in capsys.readouterr().out
    assert ckpt.stat().st_mtime_ns == stamp


def test_a_checkpoint_in_the_old_config_spelling_loads_quietly_and_evaluates(finished, tmp_path):
    # written before issue 20: no algorithm.name, network.mixer set, no algorithm section
    path = finished[0] / "checkpoint.pt"
    _, data = load_checkpoint(path)
    old = copy.deepcopy(data["config"])
    old["network"]["mixer"] = "qmix"
    del old["algorithm"]["name"], old["qmix"]
    old_path = tmp_path / "old.pt"
    write_checkpoint(old_path, {**data, "config": old})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no FutureWarning: the file is not the user's spelling
        cfg, _ = load_checkpoint(old_path)
    assert cfg == load_checkpoint(path)[0]
    assert evaluate(old_path, episodes=2) == evaluate(path, episodes=2)
