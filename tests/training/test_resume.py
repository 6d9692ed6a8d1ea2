"""Checkpoints and resuming: atomic periodic checkpoints, ``--resume`` after a SIGKILL, the
learner state restored exactly, damaged checkpoints refused with a clear error."""

from __future__ import annotations

import collections
import copy
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step

import bdps_agents.training.checkpoint as checkpoint_file
import bdps_agents.training.resume as resume_module
from bdps_agents.cli import main as cli_main
from bdps_agents.config import ConfigError, build_config
from bdps_agents.exploration import LinearSchedule
from bdps_agents.training import (
    CheckpointError,
    build_run,
    evaluate,
    load_checkpoint,
    restore_run,
    save_checkpoint,
    train,
    write_checkpoint,
)
from bdps_agents.training.run_logger import RunLogger, cut_metrics_csv

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small(small_lbf):
    """The tiny LBF run, annealing over 3000 steps, tested every 300."""
    return {
        **copy.deepcopy(small_lbf),
        "exploration": {"anneal_steps": 3000},
        "training": {
            "progress": False,
            "test_episodes": 2,
            "test_interval": 300,
            "log_interval": 100,
        },
    }


@pytest.fixture(scope="module")
def make_cfg(small, config_with):
    """``make_cfg(**sections)``: ``small`` with some sections updated, validated."""

    def _cfg(**sections):
        return config_with(small, **sections)

    return _cfg


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _tensors(tree):
    """Every tensor of a (nested) state dict, by path."""
    out = {}

    def walk(node, prefix):
        if isinstance(node, torch.Tensor):
            out[prefix] = node
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}/{k}")
        elif isinstance(node, list | tuple):
            for i, v in enumerate(node):
                walk(v, f"{prefix}/{i}")

    walk(tree, "")
    return out


def _assert_same_state(a, b):
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key


@pytest.fixture(scope="module")
def trained(make_cfg, tmp_path_factory):
    """A finished 600-step run (checkpoints after each 300-step epoch, and a final one)."""
    logdir = tmp_path_factory.mktemp("trained")
    result = train(make_cfg(training={"total_steps": 600}), logdir)
    return logdir, result


# ------------------------------------------------------------------ kill -9, then --resume
def test_sigkilled_run_resumes_from_its_checkpoint(small, tmp_path):
    logdir = tmp_path / "run"
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(json.dumps(small))  # JSON is YAML
    steps = 3000
    args = [sys.executable, "-m", "bdps_agents.cli", "train", "--scenario", str(scenario)]
    args += ["--steps", str(steps), "--logdir", str(logdir)]
    args += ["--set", "training.checkpoint_interval=600"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    ckpt_path = logdir / "checkpoint.pt"
    saved = None
    deadline = time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
            if not ckpt_path.is_file():
                continue
            _, data = load_checkpoint(ckpt_path)  # always whole: written atomically
            # the run is past its checkpoint: it logged training rows beyond it
            lines = (logdir / "metrics.csv").read_text().splitlines()[1:-1]
            if any(
                line.startswith("training,") and int(line.split(",")[1]) > data["env_step"]
                for line in lines
            ):
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0].decode()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-training:\n{out}"

    cfg, saved = load_checkpoint(ckpt_path)
    progress = saved["progress"]
    assert saved["env_step"] == progress["total_env_step"] > 0
    assert progress["env_step"] % 600 == 0 and progress["epoch"] == progress["env_step"] // 300
    assert saved["num_updates"] > 0 and "_optimizers" in saved["algorithm"]
    assert saved["env_step"] < steps
    killed_rows = _rows(logdir / "metrics.csv")  # what the killed run left (a torn line maybe)
    assert any(int(r["step"]) > saved["env_step"] for r in killed_rows if r["step"].isdigit())

    done = subprocess.run(
        [*args, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resumed from checkpoint at env step {saved['env_step']}" in done.stdout
    assert not list(logdir.glob(".checkpoint.pt.*.tmp"))  # stale temp files cleaned up

    rows = _rows(logdir / "metrics.csv")
    assert all(None not in r.values() and len(r) == 4 for r in rows)  # no torn line left
    keys = collections.Counter((r["scope"], int(r["step"]), r["metric"]) for r in rows)
    assert [k for k, n in keys.items() if n > 1] == []
    # resumed at the checkpoint, with the ε the schedule gives at its (trainer) env step
    resume = {r["metric"]: float(r["value"]) for r in rows if r["scope"] == "resume"}
    (resume_step,) = {int(r["step"]) for r in rows if r["scope"] == "resume"}
    assert resume_step == saved["env_step"]
    ex = cfg.exploration
    expected_eps = LinearSchedule(ex.eps_start, ex.eps_end, ex.anneal_steps)(progress["env_step"])
    assert resume["eps"] == pytest.approx(expected_eps)
    assert resume["refill_steps"] > 0
    at = next(i for i, r in enumerate(rows) if r["scope"] == "resume")
    before, after = rows[:at], rows[at + 1 :]
    assert all(int(r["step"]) <= saved["env_step"] for r in before)
    assert min(int(r["step"]) for r in after if r["scope"] == "training") > saved["env_step"]
    # training continued to the budget: trainer steps >= N, total counts warm-up and refill
    final = {r["metric"]: int(r["step"]) for r in rows if r["scope"] == "final"}
    assert final["greedy_return"] >= steps + resume["refill_steps"]
    greedy = [
        int(r["step"]) for r in rows if (r["scope"], r["metric"]) == ("test", "greedy_return")
    ]
    assert greedy == sorted(set(greedy)) and len(greedy) == steps // 300 + 1
    _, last = load_checkpoint(ckpt_path)
    assert last["env_step"] == final["greedy_return"]
    assert last["progress"]["env_step"] >= steps and last["num_updates"] > saved["num_updates"]


# ------------------------------------------------------------------ exact round trip
@pytest.mark.parametrize("algo", ["qmix", "bdps"])
def test_checkpoint_restores_learner_optimiser_and_counters(make_cfg, tmp_path, algo):
    cfg = make_cfg(
        algorithm={"name": algo}, **({"bdps": {"role_interval": 3}} if algo == "bdps" else {})
    )
    run = build_run(cfg)
    try:
        with policy_within_training_step(run.policy):
            run.train_collector.reset()
            run.train_collector.collect(n_episode=6)
            for _ in range(3):
                run.algorithm.update(run.buffer, 4)
        run.policy.set_eps_training(0.37)
        logger = RunLogger(tmp_path / "log", 1000, progress=False)
        logger.step_offset = 123
        logger.test_history = [(423, 0.5, 0.1)]
        note = logger.note_epoch_end(epoch=3, env_step=900, update_step=18)
        path = tmp_path / "log" / "checkpoint.pt"
        save_checkpoint(path, run, note["total_env_step"], note)
        logger.finalize()
        expected = copy.deepcopy(run.algorithm.state_dict())
        assert expected["_optimizers"][0]["state"], "Adam has no moments yet"
        rngs = (run.policy.rng.random(), run.buffer._sample_rng.random(), np.random.random())
        starts = run.buffer.sample_indices(4)
        batch = run.buffer.episode_batch(starts)
        run.algorithm._update_with_batch(batch)  # one more Adam step, from the saved state
        stepped = run.algorithm.state_dict()
    finally:
        run.close()

    cfg2, data = load_checkpoint(path)
    assert cfg2 == cfg
    run2 = build_run(cfg2)
    fresh = build_run(cfg2)
    try:
        restore_run(run2, data)
        _assert_same_state(run2.algorithm.state_dict(), expected)
        assert run2.algorithm.num_updates == 3 and run2.policy.eps_training == 0.37
        # the random generators go on where they were
        assert rngs == (
            run2.policy.rng.random(),
            run2.buffer._sample_rng.random(),
            np.random.random(),
        )
        # the same Adam step from the restored moments lands on the same weights; from fresh
        # moments it does not
        run2.algorithm._update_with_batch(batch)
        _assert_same_state(run2.algorithm.state_dict(), stepped)
        fresh.algorithm.load_state_dict(
            {**data["algorithm"], "_optimizers": fresh.algorithm.state_dict()["_optimizers"]}
        )
        fresh.algorithm._update_with_batch(batch)
        a, b = _tensors(fresh.algorithm.state_dict()), _tensors(stepped)
        assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("/policy"))
    finally:
        run2.close()
        fresh.close()
    # the counters go back to the trainer through the logger
    resumed = RunLogger(tmp_path / "log", 1000, progress=False, resume=data["progress"])
    assert resumed.restore_data() == (3, 900, 18)
    assert resumed.step_offset == 123 and resumed.test_history == [(423, 0.5, 0.1)]
    assert resumed.total_env_steps == 1023
    resumed.finalize()


def test_resume_in_process_restores_the_saved_learner(make_cfg, trained, tmp_path, monkeypatch):
    src, first = trained
    logdir = tmp_path / "run"
    shutil.copytree(src, logdir)
    _, saved = load_checkpoint(logdir / "checkpoint.pt")
    seen = {}
    original = resume_module.restore_run

    def recording_restore(run, data, *args):
        original(run, data, *args)
        seen["state"] = copy.deepcopy(run.algorithm.state_dict())
        seen["num_updates"] = run.algorithm.num_updates

    monkeypatch.setattr(resume_module, "restore_run", recording_restore)
    result = train(make_cfg(training={"total_steps": 900}), logdir, resume=True)
    _assert_same_state(seen["state"], saved["algorithm"])
    assert seen["num_updates"] == saved["num_updates"] > 0
    # the history up to the checkpoint is kept; one more epoch and its test follow
    kept = [tuple(t) for t in saved["progress"]["test_history"]]
    assert result.test_history[: len(kept)] == kept
    assert len(result.test_history) == len(first.test_history) + 1
    assert result.env_steps > first.env_steps
    rows = _rows(logdir / "metrics.csv")
    keys = collections.Counter((r["scope"], r["step"], r["metric"]) for r in rows)
    assert max(keys.values()) == 1
    assert [r["scope"] for r in rows].count("final") == 2  # greedy_return, food_collected


def test_resume_refuses_a_changed_config_or_a_missing_checkpoint(
    small, make_cfg, trained, tmp_path, capsys
):
    src, _ = trained
    changed = make_cfg(training={"total_steps": 600}, algorithm={"lr": 1e-3})
    with pytest.raises(ConfigError, match=r"algorithm\.lr") as err:
        train(changed, src, resume=True)
    assert "training.total_steps" in str(err.value)  # says what may change
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(make_cfg(), tmp_path / "empty", resume=True)
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(json.dumps(small))
    code = cli_main(
        ["train", "--scenario", str(scenario), "--logdir", str(tmp_path / "none"), "--resume"]
    )
    assert code == 2 and "no checkpoint" in capsys.readouterr().err


# ------------------------------------------------------------------ damaged checkpoints
def test_damaged_checkpoints_are_refused_clearly(small, trained, tmp_path, capsys):
    src, _ = trained
    good = (src / "checkpoint.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good[: len(good) // 2])
    flipped = bytearray(good)
    for i in range(len(good) // 2, len(good) // 2 + 8):
        flipped[i] ^= 0xFF
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(flipped))
    header_only = tmp_path / "header.pt"
    header_only.write_bytes(good[:10])
    # the payload length's high bit flipped: no 2**63-byte read (MemoryError)
    huge = bytearray(good)
    huge[len(checkpoint_file._MAGIC) + 4] ^= 0x80
    huge_length = tmp_path / "length.pt"
    huge_length.write_bytes(bytes(huge))
    for path in (cut, bad, header_only, huge_length):
        with pytest.raises(CheckpointError, match=f"checkpoint {path} is truncated or corrupt"):
            load_checkpoint(path)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint at all\n")
    with pytest.raises(ValueError, match="not a bdps-agents checkpoint"):
        load_checkpoint(text)
    # an old-style bare torch.save checkpoint, cut short
    legacy = tmp_path / "legacy.pt"
    torch.save({"config": {}, "algorithm": {"w": torch.zeros(1000)}}, legacy)
    legacy.write_bytes(legacy.read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(legacy)
    # the CLI says so instead of a traceback
    logdir = tmp_path / "run"
    logdir.mkdir()
    shutil.copy(cut, logdir / "checkpoint.pt")
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(json.dumps(small))
    argv = ["train", "--scenario", str(scenario), "--logdir", str(logdir), "--resume"]
    assert cli_main(argv) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    assert cli_main(["eval", "--checkpoint", str(huge_length), "--episodes", "1"]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    # a good one still evaluates
    result = evaluate(src / "checkpoint.pt", episodes=2)
    assert result["episodes"] == 2 and np.isfinite(result["return_mean"])


def test_a_failed_write_leaves_the_previous_checkpoint_intact(trained, tmp_path, monkeypatch):
    src, _ = trained
    path = tmp_path / "checkpoint.pt"
    shutil.copy(src / "checkpoint.pt", path)
    before = path.read_bytes()
    _, data = load_checkpoint(path)

    def half_then_fail(f, part):
        f.write(bytes(part)[: len(part) // 2])
        f.flush()
        assert list(tmp_path.glob(".checkpoint.pt.*.tmp")), "not writing to a temp file"
        assert load_checkpoint(path)[1]["env_step"] == data["env_step"]  # old one readable
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_file, "_write_bytes", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(path, {**data, "env_step": -1})
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".checkpoint.pt.*.tmp"))
    monkeypatch.undo()
    # a temp file left by a kill is ignored, and cleaned up by the next run in that logdir
    (tmp_path / ".checkpoint.pt.999-dead.tmp").write_bytes(before[:100])
    write_checkpoint(path, {**data, "env_step": 7})
    assert load_checkpoint(path)[1]["env_step"] == 7
    checkpoint_file.remove_stale_temp_files(path)
    assert not list(tmp_path.glob(".checkpoint.pt.*.tmp"))


# ------------------------------------------------------------------ metrics.csv and config
def test_metrics_csv_is_cut_back_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.csv"
    kept = "scope,step,metric,value\ntraining,100,n,1\ntest,100,greedy_return,0.5\n"
    path.write_text(kept + "training,400,n,2\ntest,4")  # later rows and a torn line
    cut_metrics_csv(path, len(kept), 100)
    assert path.read_text() == kept
    # a file shorter than noted (replaced behind our back): rows filtered by step instead;
    # the test and final rows at the checkpoint's step are logged again by the resumed run
    path.write_text(
        "scope,step,metric,value\ntraining,100,n,1\ntest,100,greedy_return,0.5\n"
        "update,90,loss,0.1\nfinal,100,greedy_return,1\ntraining,400,n,2\ntraining,1"
    )
    cut_metrics_csv(path, 10_000, 100)
    assert path.read_text().splitlines() == [
        "scope,step,metric,value",
        "training,100,n,1",
        "update,90,loss,0.1",
    ]


def test_checkpoint_interval_config():
    assert build_config({}).training.checkpoint_interval == 10_000
    assert build_config({"training": {"test_interval": 300}}).training.checkpoint_interval == 300
    cfg = build_config({"training": {"test_interval": 300, "checkpoint_interval": None}})
    assert cfg.training.checkpoint_interval is None
    with pytest.raises(ConfigError, match="training.checkpoint_interval"):
        build_config({"training": {"checkpoint_interval": 0}})
