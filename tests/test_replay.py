"""Whole-episode sampling from the Tianshou buffer: boundaries, valid mask, no leakage."""

from __future__ import annotations

import numpy as np
import pytest
from tianshou.data import Batch

from bdps_agents.replay import EpisodeReplayBuffer

N_AGENTS, OBS_DIM, N_ACT = 2, 3, 4


def _obs(value: float) -> Batch:
    """An observation whose every entry encodes (episode, step) as a float."""
    return Batch(
        obs=np.full((N_AGENTS, OBS_DIM), value, np.float32),
        state=np.full((5,), value, np.float32),
        mask=np.ones((N_AGENTS, N_ACT), np.int8),
    )


def _add_step(buf, env_ids, codes, next_codes, done, terminated=None):
    """Add one step for several envs; ``codes`` label obs, ``next_codes`` obs_next."""
    terminated = done if terminated is None else terminated
    batch = Batch(
        obs=Batch.stack([_obs(c) for c in codes]),
        obs_next=Batch.stack([_obs(c) for c in next_codes]),
        act=np.array([[int(c) % N_ACT if np.isfinite(c) else 0] * N_AGENTS for c in codes]),
        rew=np.array(codes, dtype=float),
        terminated=np.array(terminated, bool),
        truncated=np.array(done, bool) & ~np.array(terminated, bool),
        info=Batch(n_alive=np.full(len(codes), 2.0)),
        policy=Batch(hidden_state=Batch(h=np.zeros((len(codes), N_AGENTS, 8), np.float32))),
    )
    return buf.add(batch, buffer_ids=np.array(env_ids))


def _play(buf, env_id, episode, length, truncated=False):
    """One episode in one env: obs code = episode*100 + t, final obs code = episode*100 + length."""
    for t in range(length):
        last = t == length - 1
        _add_step(
            buf,
            [env_id],
            [episode * 100 + t],
            [episode * 100 + t + 1],
            [last],
            terminated=[last and not truncated],
        )


def test_incomplete_episodes_are_not_sampled():
    buf = EpisodeReplayBuffer(40, 2)
    _play(buf, 0, episode=1, length=3)
    _add_step(buf, [1], [200], [201], [False])  # env 1 mid-episode
    assert buf.num_episodes == 1
    starts = buf.sample_indices(5)
    assert set(starts.tolist()) == {0}  # only env 0's complete episode


def test_episode_batch_boundaries_valid_mask_and_final_obs():
    buf = EpisodeReplayBuffer(40, 2)
    _play(buf, 0, episode=1, length=3)
    _play(buf, 0, episode=2, length=5, truncated=True)
    _play(buf, 1, episode=3, length=2)
    starts = np.array([0, 3, 20])
    ep = buf.episode_batch(starts)
    assert ep.obs.obs.shape == (3, 6, N_AGENTS, OBS_DIM)  # T = 5, plus the final obs
    assert ep.act.shape == (3, 5, N_AGENTS)
    np.testing.assert_array_equal(ep.lengths, [3, 5, 2])
    np.testing.assert_array_equal(ep.valid.sum(1), [3, 5, 2])
    for b, (episode, length) in enumerate([(1, 3), (2, 5), (3, 2)]):
        codes = ep.obs.obs[b, :, 0, 0]
        # steps 0..L-1 then the observation after the last action, then zero padding
        np.testing.assert_array_equal(codes[: length + 1], episode * 100 + np.arange(length + 1))
        assert np.all(codes[length + 1 :] == 0)
        np.testing.assert_array_equal(ep.rew[b, :length], episode * 100 + np.arange(length))
        assert np.all(ep.rew[b, length:] == 0) and not ep.terminated[b, length:].any()
    # terminated only on the last step of terminated episodes; truncation kept apart
    assert ep.terminated[0, 2] and not ep.terminated[1].any() and ep.truncated[1, 4]


def test_no_leakage_across_episodes_and_wraparound():
    buf = EpisodeReplayBuffer(20, 2)  # 10 slots per env
    for episode in range(1, 6):  # 5 episodes of 3 steps in env 0: wraps the 10-slot ring
        _play(buf, 0, episode=episode, length=3)
    # 15 steps in 10 slots: episode 4 wraps (slots 9, 0, 1), episode 5 sits at 2-4 and cut
    # episodes 1 and 2 (episode 2 keeps an orphan tail at slot 5); episode 3 is intact at 6-8
    starts = np.flatnonzero(buf._episode_len)
    ep = buf.episode_batch(starts)
    episodes = sorted({int(c) // 100 for c in ep.obs.obs[:, 0, 0, 0]})
    assert episodes == [3, 4, 5]
    wrapped = list(starts).index(9)
    np.testing.assert_array_equal(ep.obs.obs[wrapped, :4, 0, 0], [400, 401, 402, 403])
    for b in range(len(starts)):
        L = ep.lengths[b]
        codes = ep.obs.obs[b, : L + 1, 0, 0]
        assert len({int(c) // 100 for c in codes}) == 1, "an episode mixes steps of two episodes"


def test_hidden_state_is_not_stored_and_hasnull_is_incremental():
    buf = EpisodeReplayBuffer(20, 2)
    _play(buf, 0, episode=1, length=2)
    assert "policy" not in buf._meta.get_keys() or len(buf._meta.policy.get_keys()) == 0
    assert "obs_next" not in buf._meta.get_keys()
    assert not buf.hasnull()
    _add_step(buf, [1], [float("nan")], [1.0], [True])
    assert buf.hasnull()


def test_sample_indices_are_episode_starts():
    buf = EpisodeReplayBuffer(200, 4, seed=3)
    rng = np.random.default_rng(0)
    episode = 1
    for env in range(4):
        for _ in range(4):
            _play(buf, env, episode, int(rng.integers(1, 8)))
            episode += 1
    starts = buf.sample_indices(64)
    assert len(starts) == 64
    assert np.all(buf._episode_len[starts] > 0)
    # every sampled start really is the first step: its obs code ends in 00
    codes = buf._meta.obs.obs[starts, 0, 0]
    assert np.all(codes % 100 == 0)


def test_bad_start_index_is_rejected():
    buf = EpisodeReplayBuffer(20, 2)
    _play(buf, 0, episode=1, length=3)
    with pytest.raises(ValueError, match="not a complete episode start"):
        buf.episode_batch(np.array([1]))
