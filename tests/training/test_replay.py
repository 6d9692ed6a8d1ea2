"""Whole-episode sampling from the Tianshou buffer: boundaries, valid mask, no leakage; the
compact layout (bytes per stored step) and that it replays exactly what was collected."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step
from tianshou.data import Batch, Collector

from bdps_agents.presets import load_config
from bdps_agents.replay import EpisodeReplayBuffer
from bdps_agents.training import build_run

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


def test_an_episode_longer_than_its_sub_buffer_is_not_replayed():
    buf = EpisodeReplayBuffer(20, 2)  # 10 slots per env
    _play(buf, 0, episode=1, length=12)  # overwrote its own start
    _play(buf, 1, episode=2, length=4)
    assert buf.num_episodes == 1 and set(buf.sample_indices(0).tolist()) == {10}


def test_final_observations_are_copied_and_their_rows_reused():
    buf = EpisodeReplayBuffer(20, 2)
    obs_next = Batch.stack([_obs(101.0)])
    batch = Batch(
        obs=Batch.stack([_obs(100.0)]),
        obs_next=obs_next,
        act=np.zeros((1, N_AGENTS), np.int64),
        rew=np.zeros(1),
        terminated=np.array([True]),
        truncated=np.array([False]),
    )
    buf.add(batch, buffer_ids=[0])
    obs_next.obs[:] = -1.0  # the collector reuses its arrays: the buffer must hold a copy
    assert np.all(buf.episode_batch(np.array([0])).obs.obs[0, 1] == 101.0)
    for episode in range(2, 100):  # 99 short episodes through 10 slots
        _play(buf, 0, episode=episode, length=3)
    assert len(buf._final_row) == buf.num_episodes <= 4
    assert len(buf._final_pool) <= 6, "rows of overwritten episodes are not reused"
    ep = buf.episode_batch(buf.sample_indices(0))
    for b, length in enumerate(ep.lengths):  # each final obs belongs to its own episode
        codes = ep.obs.obs[b, : length + 1, 0, 0]
        np.testing.assert_array_equal(codes, codes[0] + np.arange(length + 1))


@pytest.mark.parametrize(
    ("n_actions", "stored"), [(2, np.uint8), (255, np.uint8), (256, np.uint8), (257, np.uint16)]
)
def test_actions_round_trip_in_the_smallest_type(n_actions, stored):
    """The stored type holds every action of ``n_actions`` (the width of ``obs.mask``); replay
    gives back the policy's int64 values."""
    buf = EpisodeReplayBuffer(20, 1)
    acts = np.array([[0, n_actions - 1], [n_actions // 2, 1], [n_actions - 1, 0]], np.int64)
    for t, act in enumerate(acts):
        last = t == len(acts) - 1
        obs = Batch(
            obs=np.zeros((1, N_AGENTS, OBS_DIM), np.float32),
            state=np.zeros((1, 5), np.float32),
            mask=np.ones((1, N_AGENTS, n_actions), np.int8),
        )
        buf.add(
            Batch(
                obs=obs,
                obs_next=obs,
                act=act[None],
                rew=np.zeros(1),
                terminated=np.array([last]),
                truncated=np.array([False]),
            ),
            buffer_ids=[0],
        )
    assert buf._meta.act.dtype == stored
    ep = buf.episode_batch(np.array([0]))
    assert ep.act.dtype == np.int64
    np.testing.assert_array_equal(ep.act[0], acts)
    bad = Batch(obs=obs, obs_next=obs, act=np.array([[n_actions, 0]]), rew=np.zeros(1))
    bad.terminated = bad.truncated = np.array([False])
    with pytest.raises(ValueError, match="actions must lie in"):
        buf.add(bad, buffer_ids=[0])


def test_compact_scalars_and_info_only_on_request():
    buf = EpisodeReplayBuffer(20, 2)
    _play(buf, 0, episode=1, length=2)
    meta = buf._meta
    assert (meta.rew.dtype, meta.terminated.dtype, meta.truncated.dtype, meta.done.dtype) == (
        np.float32,
        bool,
        bool,
        bool,
    )
    assert "info" not in meta.get_keys()
    assert buf.episode_batch(np.array([0])).rew.dtype == np.float32
    kept = EpisodeReplayBuffer(20, 2, info_keys=("n_alive",))
    _play(kept, 0, episode=1, length=2)
    assert kept._meta.info.n_alive.dtype == np.float32 and kept[np.arange(2)].info.n_alive[0] == 2


# -- a real Collector on LBF 15x15-4p-5f ---------------------------------------------------------

LBF_SLOTS = 400  # 8 episodes of 50 steps


class _RecordingBuffer(EpisodeReplayBuffer):
    """Keeps a copy of every transition added, per env, for an independent reference."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps: dict[int, list[dict]] = {}

    def add(self, batch, buffer_ids=None):
        result = super().add(batch, buffer_ids)
        policy = batch.get("policy", Batch())
        # the recurrent state and the step counter are used while adding, not stored
        extra = [k for k in policy.get_keys() if k not in ("hidden_state", "episode_step")]
        for r, (env, slot) in enumerate(zip(buffer_ids, result[0], strict=True)):
            self.steps.setdefault(int(env), []).append(
                {
                    "slot": int(slot),
                    "obs": copy.deepcopy(batch.obs[r]),
                    "obs_next": copy.deepcopy(batch.obs_next[r]),
                    "act": np.array(batch.act[r]),
                    "rew": np.array(batch.rew[r]),
                    "terminated": bool(batch.terminated[r]),
                    "truncated": bool(batch.truncated[r]),
                    "policy": {k: np.array(policy[k][r]) for k in extra},
                }
            )
        return result


@pytest.fixture(scope="module", params=["qmix", "bdps"])
def lbf_collected(request):
    """(algorithm, buffer filled twice over by a Collector on LBF 15x15-4p-5f)."""
    cfg = load_config(
        "lbf/15x15-4p-5f",
        [
            f"algorithm.name={request.param}",
            "env.num_train_envs=2",
            "env.num_test_envs=1",
            "replay.capacity_episodes=8",
            "replay.batch_episodes=4",
            "replay.warmup_episodes=4",
        ],
    )
    run = build_run(cfg)
    buf = _RecordingBuffer(LBF_SLOTS, 2, seed=1)
    try:
        with policy_within_training_step(run.policy):
            run.policy.set_eps_training(1.0)
            collector = Collector(run.policy, run.train_envs, buf)
            collector.reset()
            collector.collect(n_step=2 * LBF_SLOTS)
    finally:
        run.close()
    return run.algorithm, buf


def _reference_episode_batch(buf: _RecordingBuffer, starts: np.ndarray) -> Batch:
    """What ``episode_batch`` returned before the compact layout (Tianshou's float64 ``rew``,
    the policy's int64 ``act``), rebuilt from the recorded transitions."""
    episodes = []
    for s in starts:
        steps = buf.steps[int(s) // buf._sub_size]
        first = max(i for i, step in enumerate(steps) if step["slot"] == s)  # latest write
        last = next(
            i for i in range(first, len(steps)) if steps[i]["terminated"] or steps[i]["truncated"]
        )
        episodes.append(steps[first : last + 1])
    B, T = len(episodes), max(len(e) for e in episodes)
    lengths = np.array([len(e) for e in episodes], np.int64)
    valid = np.arange(T)[None] < lengths[:, None]
    obs0 = episodes[0][0]["obs"]
    obs = Batch({k: np.zeros((B, T + 1, *obs0[k].shape), obs0[k].dtype) for k in obs0.get_keys()})
    act = np.zeros((B, T, *episodes[0][0]["act"].shape), np.int64)
    rew = np.zeros((B, T), np.float64)
    terminated = np.zeros((B, T), bool)
    truncated = np.zeros((B, T), bool)
    policy = {k: np.zeros((B, T, *v.shape), v.dtype) for k, v in episodes[0][0]["policy"].items()}
    for b, episode in enumerate(episodes):
        for t in range(T):
            step = episode[t] if t < len(episode) else episode[0]  # padding repeats step 0
            if t < len(episode):
                for k in obs0.get_keys():
                    obs[k][b, t] = step["obs"][k]
                rew[b, t] = step["rew"]
                terminated[b, t], truncated[b, t] = step["terminated"], step["truncated"]
            act[b, t] = step["act"]
            for k in policy:
                policy[k][b, t] = step["policy"][k]
        for k in obs0.get_keys():
            obs[k][b, len(episode)] = episode[-1]["obs_next"][k]
    return Batch(
        policy=Batch(policy),
        obs=obs,
        act=act,
        rew=rew,
        terminated=terminated,
        truncated=truncated,
        valid=valid,
        lengths=lengths,
    )


def test_bytes_per_step_within_10_percent_of_the_raw_observation(lbf_collected):
    _, buf = lbf_collected
    n, d, A, S = 4, 27, 6, 28  # LBF 15x15-4p-5f: 4 agents, 3 * 9 obs features, 6 actions
    raw = n * d * 4 + S * 4 + n * A
    assert buf.raw_bytes_per_step() == raw
    assert len(buf) == buf.maxsize and buf.num_episodes > 0  # full: the steady-state figure
    assert buf.bytes_per_step() <= 1.1 * raw, buf.memory_bytes()
    assert buf._meta.act.dtype == np.uint8 and "info" not in buf._meta.get_keys()
    for role in buf._meta.get("policy", Batch()).values():
        assert role.dtype == np.int8


def _assert_same_as_reference(ep: Batch, ref: Batch) -> None:
    assert set(ep.get_keys()) == set(ref.get_keys())
    for key in ("act", "terminated", "truncated", "valid", "lengths"):
        assert ep[key].dtype == ref[key].dtype, key
        np.testing.assert_array_equal(ep[key], ref[key], err_msg=key)
    for key in ref.obs.get_keys():
        assert ep.obs[key].dtype == ref.obs[key].dtype, key
        np.testing.assert_array_equal(ep.obs[key], ref.obs[key], err_msg=key)
    assert set(ep.policy.get_keys()) == set(ref.policy.get_keys())
    for key in ref.policy.get_keys():
        assert ep.policy[key].dtype == ref.policy[key].dtype, key
        np.testing.assert_array_equal(ep.policy[key], ref.policy[key], err_msg=key)
    # rew is float32 now: the very values the learner made of the float64 rewards
    assert ep.rew.dtype == np.float32
    np.testing.assert_array_equal(ep.rew, ref.rew.astype(np.float32))


def test_episode_batch_matches_the_collected_transitions(lbf_collected):
    algorithm, buf = lbf_collected
    starts = buf.sample_indices(0)
    assert len(starts) >= 4 and len(buf.steps[0]) > buf._sub_size  # wrapped at least once
    ep = buf.episode_batch(starts)
    ref = _reference_episode_batch(buf, starts)
    _assert_same_as_reference(ep, ref)
    # and the learner's tensors are identical, dtypes included
    got, want = algorithm.episode_tensors(ep), algorithm.episode_tensors(ref)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]), key


def test_episode_batch_matches_reference_with_mixed_lengths_and_wraparound():
    buf = _RecordingBuffer(60, 2)  # 30 slots per env
    rng = np.random.default_rng(5)
    episode = 1
    for _ in range(12):
        for env in (0, 1):
            length = int(rng.integers(1, 9))
            _play(buf, env, episode, length, truncated=bool(rng.integers(2)))
            episode += 1
    starts = buf.sample_indices(0)
    assert len(set(buf._episode_len[starts].tolist())) > 3
    _assert_same_as_reference(buf.episode_batch(starts), _reference_episode_batch(buf, starts))
