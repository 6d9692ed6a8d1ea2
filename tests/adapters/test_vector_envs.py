"""Stacked-observation vector envs: the same data as Tianshou's per-env dicts, one Batch."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from tianshou.data import Batch, Collector
from tianshou.env import DummyVectorEnv

from bdps_agents.algorithms import build_algorithm
from bdps_agents.config import build_config
from bdps_agents.joint_env import make_joint_env
from bdps_agents.replay import EpisodeReplayBuffer
from bdps_agents.training import EnvSpec, make_vector_env
from bdps_agents.vector_envs import StackedDummyVectorEnv, stack_observations


@pytest.fixture
def task(small_lbf) -> str:
    """The LBF task of the tiny run."""
    return small_lbf["env"]["kwargs"]["task"]


def _same(stacked: Batch, dicts: np.ndarray) -> None:
    assert isinstance(stacked, Batch)
    assert set(stacked.get_keys()) == set(dicts[0])
    for key in dicts[0]:
        want = np.stack([d[key] for d in dicts])
        got = stacked[key]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("keep_info", [True, False])
@pytest.mark.parametrize("vector_env", ["dummy", "subproc"])
def test_stacked_observations_equal_tianshou_dicts(
    task, small_lbf, config_with, vector_env, keep_info
):
    n = 3
    cfg = config_with(small_lbf, env={"vector_env": vector_env})
    venv = make_vector_env(cfg.env, n, seed=7, keep_info=keep_info)
    assert type(venv).__name__.startswith("Stacked")
    ref = DummyVectorEnv([partial(make_joint_env, "lbf", task=task)] * n)
    ref.seed(7)
    try:
        obs = ref.reset()[0]
        _same(venv.reset()[0], obs)
        rng = np.random.default_rng(0)
        ends = 0
        for t in range(60):  # episodes of this task are short: several end and are reset
            masks = np.stack([o["mask"] for o in obs])
            act = (rng.random(masks.shape) * masks).argmax(-1)
            if t % 7 == 3:  # now and then only some envs step (as the Collector's n_episode)
                ids = [0, n - 1]
                step = ref.step(act[ids], ids)
                got = venv.step(act[ids], ids)
                _same(got[0], step[0])
                for a, b in zip(got[1:4], step[1:4], strict=True):
                    np.testing.assert_array_equal(a, b)
                obs = obs.copy()
                obs[ids] = step[0]
                done = np.flatnonzero(step[2] | step[3])
                if done.size:
                    reset = ref.reset(np.asarray(ids)[done])[0]
                    _same(venv.reset(np.asarray(ids)[done])[0], reset)
                    obs[np.asarray(ids)[done]] = reset
                continue
            step = ref.step(act)
            got = venv.step(act)
            _same(got[0], step[0])
            for a, b in zip(got[1:4], step[1:4], strict=True):
                np.testing.assert_array_equal(a, b)
            if keep_info:
                assert [dict(i) for i in got[4]] == [dict(i) for i in step[4]]
            else:  # training's envs: nobody reads step infos
                assert step[4][0] and got[4].dtype == object
                assert [dict(i) for i in got[4]] == [{}] * n
            obs = step[0]
            done = np.flatnonzero(step[2] | step[3])
            if done.size:
                ends += done.size
                reset = ref.reset(done)[0]
                _same(venv.reset(done)[0], reset)
                obs = obs.copy()
                obs[done] = reset
        assert ends > 0
    finally:
        ref.close()
        venv.close()


def test_one_action_per_stepped_env(task) -> None:
    venv = StackedDummyVectorEnv([partial(make_joint_env, "lbf", task=task)] * 2)
    obs, _ = venv.reset()
    with pytest.raises(ValueError, match=r"1 actions for 2 envs"):
        venv.step(np.zeros((1, obs.mask.shape[1]), dtype=np.int64))
    venv.close()


def test_non_dict_observations_pass_through():
    arr = np.zeros((2, 3), dtype=np.float32)
    assert stack_observations(arr) is arr
    objs = np.array([np.zeros(2), np.zeros(3)], dtype=object)
    assert stack_observations(objs) is objs


def test_collector_fills_the_replay_from_stacked_observations(task, small_lbf):
    probe = make_joint_env("lbf", task=task)
    algorithm = build_algorithm(build_config(small_lbf), EnvSpec.of(probe))
    venv = StackedDummyVectorEnv([partial(make_joint_env, "lbf", task=task)] * 2)
    buffer = EpisodeReplayBuffer(20 * (probe.episode_limit + 1), 2)
    collector = Collector(algorithm.policy, venv, buffer)
    stats = collector.collect(n_episode=4, reset_before_collect=True)
    assert stats.n_collected_episodes >= 4 and len(buffer) == stats.n_collected_steps
    assert buffer.obs.obs.shape[1:] == (probe.n_agents, probe.obs_dim)
    venv.close()
