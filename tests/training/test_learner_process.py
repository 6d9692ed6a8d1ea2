"""Gradient steps in a child process (``training.overlap_learning``): the same updates as learning
in this process, one step later; errors and a dead child surface clearly; training with it is
deterministic and its checkpoints hold the child's learner."""

from __future__ import annotations

import csv
import functools
import os
import signal

import numpy as np
import pytest
import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step, torch_train_mode
from tianshou.data import Collector

from bdps_agents import learner_process
from bdps_agents.algorithms import build_algorithm
from bdps_agents.algorithms.value_decomposition import NonFiniteError
from bdps_agents.learner_process import DeviceLearner, LearnerProcess, LearnerProcessError
from bdps_agents.replay import EpisodeReplayBuffer
from bdps_agents.training import (
    EnvSpec,
    load_checkpoint,
    make_joint,
    make_vector_env,
    train,
)

CHILD_SEED = 1234  # the child's generator seed, fixed so that BDPS's VAE sampling matches


@pytest.fixture
def setup_run(small_lbf_config):
    """``setup_run(overrides, n_batches=4)``: :func:`_setup` below, on the tiny LBF run."""

    def _setup(overrides: dict | None = None, n_batches: int = 4):
        """A config, two identical algorithms and ``n_batches`` episode batches from real LBF."""
        cfg = small_lbf_config(overrides)
        spec = EnvSpec.of(make_joint(cfg.env))
        torch.manual_seed(0)
        inline = build_algorithm(cfg, spec)
        overlapped = build_algorithm(cfg, spec)
        overlapped.load_state_dict(inline.state_dict())
        venv = make_vector_env(cfg.env, 2, seed=0)
        buffer = EpisodeReplayBuffer(50 * 50, 2, seed=0)
        with policy_within_training_step(inline.policy):
            inline.policy.set_eps_training(1.0)
            Collector(inline.policy, venv, buffer).collect(n_episode=8, reset_before_collect=True)
        venv.close()
        batches = []
        for _ in range(n_batches):
            batch, indices = buffer.sample(4)
            batches.append(inline._preprocess_batch(batch, buffer, indices))
        factory = functools.partial(build_algorithm, cfg, spec)
        return inline, overlapped, batches, factory

    return _setup


def _policy_state(algorithm):
    return {k: v.clone() for k, v in algorithm.policy.state_dict().items()}


def _assert_equal_states(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_child_runs_the_same_updates_one_step_later(setup_run, algorithm_variant, monkeypatch):
    inline, overlapped, batches, factory = setup_run(algorithm_variant)
    for generator in inline.policy.torch_generators().values():  # as the child reseeds its own
        generator.manual_seed(CHILD_SEED)
    monkeypatch.setattr(learner_process, "learner_seed", lambda algorithm: CHILD_SEED)
    with LearnerProcess(overlapped, factory) as learner:
        overlapped.remote_learner = learner
        after_inline = []
        for batch in batches:
            with torch_train_mode(inline):
                inline._update_with_batch(batch)
            after_inline.append((_policy_state(inline), inline.num_updates))
        initial = _policy_state(overlapped)
        losses = []
        for i, batch in enumerate(batches):
            stats = learner.submit(batch)
            losses.append(getattr(stats, "loss", None))
            # the acting networks are those after i - 1 gradient steps
            want = initial if i == 0 else after_inline[i - 1][0]
            _assert_equal_states(_policy_state(overlapped), want)
            assert overlapped.num_updates == i
        assert losses[0] is None and all(np.isfinite(x) for x in losses[1:])
        learner.sync(full_state=True)
        assert overlapped.num_updates == inline.num_updates == len(batches)
        # optimiser state and target networks too, not only the acting networks
        full_a, full_b = inline.state_dict(), overlapped.state_dict()
        _assert_equal_states(
            {k: v for k, v in full_a.items() if isinstance(v, torch.Tensor)},
            {k: v for k, v in full_b.items() if isinstance(v, torch.Tensor)},
        )
        adam_a = inline.optim.state_dict()["state"]
        adam_b = overlapped.optim.state_dict()["state"]
        for key in adam_a:
            assert torch.equal(adam_a[key]["exp_avg"], adam_b[key]["exp_avg"])
        first_key = next(iter(initial))  # and the updates did change the networks
        assert not torch.equal(after_inline[-1][0][first_key], initial[first_key])


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(
                not torch.cuda.is_available(), reason="no CUDA device on this machine"
            ),
        ),
    ],
)
def test_a_device_learner_runs_the_same_updates_without_lag(
    setup_run, algorithm_variant, monkeypatch, device
):
    """``training.device``'s learner, here on the CPU (the code path a GPU takes) and on CUDA
    where there is one: after each submit the acting policy equals the inline one's (exactly on
    the CPU, to float tolerance on a GPU), and a full sync brings the optimiser back too."""
    inline, acting, batches, factory = setup_run(algorithm_variant)
    for generator in inline.policy.torch_generators().values():  # as the learner reseeds its own
        generator.manual_seed(CHILD_SEED)
    monkeypatch.setattr(learner_process, "learner_seed", lambda algorithm: CHILD_SEED)
    learner = DeviceLearner(acting, factory, device)
    acting.remote_learner = learner
    initial = _policy_state(acting)
    for i, batch in enumerate(batches):
        with torch_train_mode(inline):
            want = inline._update_with_batch(batch)
        got = learner.submit(batch)
        assert got.loss == pytest.approx(want.loss, rel=0 if device == "cpu" else 1e-4)
        assert acting.num_updates == inline.num_updates == i + 1
        for key, value in _policy_state(inline).items():
            torch.testing.assert_close(
                _policy_state(acting)[key],
                value,
                **({"rtol": 0, "atol": 0} if device == "cpu" else {}),
            )
    assert all(
        t.device.type == "cpu" for t in acting.state_dict().values() if isinstance(t, torch.Tensor)
    )
    learner.sync(full_state=True)
    adam_a = inline.optim.state_dict()["state"]
    adam_b = acting.optim.state_dict()["state"]
    for key in adam_a:
        torch.testing.assert_close(adam_b[key]["exp_avg"].cpu(), adam_a[key]["exp_avg"])
    first_key = next(iter(initial))  # and the updates did change the networks
    assert not torch.equal(_policy_state(acting)[first_key], initial[first_key])


def test_a_non_finite_loss_in_the_child_raises_here(setup_run):
    _, overlapped, batches, factory = setup_run(n_batches=1)
    with LearnerProcess(overlapped, factory) as learner:
        batch = batches[0]
        batch.rew = np.full_like(batch.rew, np.nan)
        learner.submit(batch)
        with pytest.raises(NonFiniteError, match="TD loss"):
            learner.sync()


def test_a_dead_child_is_reported_with_what_to_do(setup_run):
    _, overlapped, batches, factory = setup_run(n_batches=2)
    with LearnerProcess(overlapped, factory) as learner:
        learner.submit(batches[0])
        learner.sync()
        os.kill(learner._process.pid, signal.SIGKILL)
        learner._process.join()
        with pytest.raises(LearnerProcessError, match="overlap_learning=false"):
            learner.submit(batches[1])
            learner.sync()


def _update_rows(logdir):
    with (logdir / "metrics.csv").open(newline="") as f:
        return [
            (r["step"], r["metric"], r["value"])
            for r in csv.DictReader(f)
            if r["scope"] == "update" and r["metric"] in ("loss", "td_loss")
        ]


@pytest.mark.parametrize("algo", ["qmix", "bdps"])
def test_training_with_a_learner_process_is_deterministic_and_checkpoints_its_learner(
    small_lbf, config_with, tmp_path, algo
):
    cfg = config_with(
        small_lbf,
        algorithm={"name": algo},
        # BDPS's section only when it is chosen (another algorithm's section is refused)
        **({"bdps": {"role_interval": 3, "group_interval_multiple": 2}} if algo == "bdps" else {}),
        training={
            "total_steps": 1200,
            "steps_per_update": 10,
            "log_interval": 10,
            "test_interval": 600,
            "seed": 3,
            "overlap_learning": True,
        },
    )
    first, second = train(cfg, tmp_path / "a"), train(cfg, tmp_path / "b")
    rows = _update_rows(first.logdir)
    assert len(rows) > 100
    assert rows == _update_rows(second.logdir)
    assert first.test_history == second.test_history
    _, saved = load_checkpoint(first.checkpoint)
    # every gradient step of the child is in the checkpoint: 1 per 10 steps after the warm-up
    n_updates = saved["num_updates"]
    assert n_updates == sum(1 for _, metric, _ in rows if metric == "loss") + 1
    adam = saved["algorithm"]["_optimizers"][0]["state"]
    assert all(int(s["step"]) == n_updates for s in adam.values())


def _failing_factory():
    raise RuntimeError("cannot build the algorithm here")


def test_a_child_that_cannot_start_raises_its_error_and_is_cleaned_up(setup_run):
    _, overlapped, batches, _ = setup_run(n_batches=1)
    learner = LearnerProcess(overlapped, _failing_factory)
    with pytest.raises(RuntimeError, match="cannot build the algorithm here"):
        learner.submit(batches[0])
    assert not learner.started
