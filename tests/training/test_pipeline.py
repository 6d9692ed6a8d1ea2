"""The learner inside Tianshou's unmodified pipeline: Collector, vector envs, trainer, logger,
checkpoints, and the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step
from tianshou.data import Batch
from tianshou.trainer import OffPolicyTrainerParams
from tianshou.utils import TensorboardLogger
from torch.utils.tensorboard import SummaryWriter

from bdps_agents.cli import main as cli_main
from bdps_agents.training import build_run, load_checkpoint


@pytest.fixture
def make_cfg(small_lbf, config_with):
    """``make_cfg(**sections)``: the tiny LBF run with some sections updated, validated."""

    def _cfg(**sections):
        return config_with(small_lbf, **sections)

    return _cfg


@pytest.mark.parametrize("vector_env", ["dummy", "subproc"])
def test_trains_under_offpolicy_trainer(small_lbf_config, tmp_path, vector_env, algorithm_variant):
    cfg = small_lbf_config({**algorithm_variant, "env.vector_env": vector_env})
    run = build_run(cfg)
    try:
        before = {k: v.clone() for k, v in run.policy.agent.state_dict().items()}
        result = run.algorithm.run_training(
            OffPolicyTrainerParams(
                training_collector=run.train_collector,
                test_collector=run.test_collector,
                max_epochs=1,
                epoch_num_steps=200,
                collection_step_num_env_steps=20,
                update_step_num_gradient_steps_per_sample=1 / 20,
                batch_size=4,
                test_step_num_episodes=2,
                logger=TensorboardLogger(SummaryWriter(str(tmp_path))),
                show_progress=False,
            )
        )
        assert result.update_step >= 5
        after = run.policy.agent.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before), "no parameter changed"
        # one stacked network (full), one per agent (none); per role or cluster the algorithm's
        # own tests count them (BDPS: also its selectors, by level)
        sharing = cfg.network.sharing
        if sharing in ("full", "none"):
            assert run.policy.agent.groups == (1 if sharing == "full" else run.spec.n_agents)
        if cfg.algorithm.name == "bdps":
            assert run.policy.agent.groups == cfg.section("bdps").n_roles
            bilevel = cfg.section("bdps").levels == 2
            assert (run.policy.group_selector is not None) == bilevel
    finally:
        run.close()


def test_hidden_state_is_zero_at_every_episode_start(make_cfg):
    """The Collector must hand the policy a zeroed recurrent state at each episode start.
    LBF's state ends with t / episode_limit, so t = 0 marks the first step of an episode."""
    run = build_run(make_cfg())
    policy = run.policy
    seen = {"starts": 0, "bad": 0, "mid_nonzero": 0}
    original = policy.forward

    def recording_forward(batch, state=None, **kw):
        if state is not None and isinstance(state, Batch) and len(state.get_keys()):
            start = np.asarray(batch.obs.state)[:, -1] == 0
            h = np.abs(state.h).reshape(len(start), -1).sum(1)
            seen["starts"] += int(start.sum())
            seen["bad"] += int((h[start] > 0).sum())
            seen["mid_nonzero"] += int((h[~start] > 0).sum())
        return original(batch, state, **kw)

    policy.forward = recording_forward  # type: ignore[method-assign]
    try:
        with policy_within_training_step(policy):
            run.train_collector.reset()
            run.train_collector.collect(n_episode=12)
    finally:
        run.close()
    assert seen["starts"] >= 8, "too few episode starts observed"
    assert seen["bad"] == 0, "a stale hidden state leaked into a new episode"
    assert seen["mid_nonzero"] > 0, "the state was never carried within an episode"


def test_checkpoint_roundtrip_gives_identical_q_values(make_cfg, tmp_path):
    cfg = make_cfg()
    run = build_run(cfg)
    with policy_within_training_step(run.policy):
        run.train_collector.reset()
        run.train_collector.collect(n_episode=6)
        for _ in range(3):
            run.algorithm.update(run.buffer, 4)
    ep = run.buffer.episode_batch(run.buffer.sample_indices(3))
    x = run.algorithm.episode_tensors(ep)["inputs"]
    q = run.policy.agent(x)
    torch.save(
        {"config": cfg.model_dump(mode="json"), "algorithm": run.algorithm.state_dict()},
        tmp_path / "c.pt",
    )
    run.close()
    cfg2, data = load_checkpoint(tmp_path / "c.pt")
    run2 = build_run(cfg2)
    run2.algorithm.load_state_dict(data["algorithm"])
    torch.testing.assert_close(run2.policy.agent(x), q)
    run2.close()


def test_not_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(ValueError, match="not a bdps-agents checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_cli_train_then_eval(small_lbf, tmp_path, capsys):
    logdir = tmp_path / "run"
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(json.dumps(small_lbf))  # JSON is YAML
    code = cli_main(
        [
            "train",
            "--scenario",
            str(scenario),
            "--steps",
            "600",
            "--seed",
            "1",
            "--logdir",
            str(logdir),
            "--set",
            "training.test_interval=300",
            "--set",
            "training.log_interval=100",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "final greedy return" in out
    for name in ("checkpoint.pt", "learning_curve.png", "metrics.csv", "config.json"):
        assert (logdir / name).is_file(), name
    assert any(logdir.glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((logdir / "metrics.csv").open()))
    assert {"training", "test", "update"} <= {r["scope"] for r in rows}
    assert any(r["metric"] == "greedy_return" for r in rows)
    final = {r["metric"]: r for r in rows if r["scope"] == "final"}
    assert set(final) == {"greedy_return", "food_collected"}  # LBF's episode metric too
    assert int(final["greedy_return"]["step"]) >= 600  # warm-up + trainer steps
    assert any(r["scope"] == "test" and r["metric"] == "food_collected" for r in rows)
    # every row's step is the total env step (warm-up included), update rows too
    final_step = int(final["greedy_return"]["step"])
    for scope in ("training", "test", "update"):
        steps = [int(r["step"]) for r in rows if r["scope"] == scope]
        assert steps == sorted(steps) and 0 < steps[-1] <= final_step, scope
    first_update = min(int(r["step"]) for r in rows if r["scope"] == "update")
    assert first_update > 4 * 6  # after the 4 warm-up episodes of >= 6 steps (6x6 LBF)
    assert cli_main(["eval", "--checkpoint", str(logdir / "checkpoint.pt"), "--episodes", "4"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["episodes"] == 4 and np.isfinite(result["return_mean"])


def test_cli_reports_bad_config(capsys):
    code = cli_main(["train", "--scenario", "lbf/8x8-2p-2f", "--set", "algorithm.gamma=7"])
    assert code == 2
    assert "algorithm.gamma" in capsys.readouterr().err


def test_cli_reports_unknown_adapter(capsys):
    code = cli_main(["train", "--scenario", "lbf/8x8-2p-2f", "--set", "env.adapter=starcraft3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "starcraft3" in err and "lbf" in err  # names the bad adapter and the known ones


def test_replay_that_cannot_fit_in_memory_is_refused(make_cfg, monkeypatch):
    import os

    from bdps_agents.config import ConfigError

    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 2**18}  # a machine with 1 GiB
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    cfg = make_cfg(replay={"capacity_episodes": 200_000})  # 200k LBF episodes: several GiB
    with pytest.raises(ConfigError, match=r"replay.capacity_episodes=200000 needs about .* GiB"):
        build_run(cfg)
    build_run(make_cfg(replay={"capacity_episodes": 100})).close()  # a small one is fine
