"""``SMAXVectorEnv``: batched SMAX behind Tianshou's vector-env interface, checked step by step
against a ``DummyVectorEnv`` of the unbatched adapter stack (``JointEnv(SMACParallelEnv(
SMAXStarCraft2Env))``), and through the Collector into the episode replay buffer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from tianshou.algorithm.algorithm_base import policy_within_training_step
from tianshou.data import Collector
from tianshou.env import DummyVectorEnv

from bdps_agents.adapters.smac import SMACParallelEnv
from bdps_agents.adapters.smax import SMAXStarCraft2Env
from bdps_agents.adapters.smax.vector import SMAXVectorEnv
from bdps_agents.joint_env import JointEnv
from bdps_agents.presets import load_config
from bdps_agents.replay import EpisodeReplayBuffer
from bdps_agents.training import EnvSpec, build_run, make_joint

pytestmark = pytest.mark.requires(module="jaxmarl", extra="smax")

MAP = "3m"
N_ENVS = 3
N_AGENTS = 3  # 3m
LIMIT = 20  # short episodes: time-outs (truncations) happen next to wins and losses


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[DummyVectorEnv, SMAXVectorEnv]]:
    """The adapter stack and the batched env, both seeded 7 (env i: seed 7 + i)."""
    ref = DummyVectorEnv(
        [
            lambda: JointEnv(SMACParallelEnv(SMAXStarCraft2Env(MAP, episode_limit=LIMIT)), "mean")
            for _ in range(N_ENVS)
        ]
    )
    ref.seed(7)
    venv = SMAXVectorEnv(MAP, N_ENVS, seed=7, episode_limit=LIMIT, batching="map")
    yield ref, venv
    ref.close()
    venv.close()


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Exact equality including Python types, numpy dtypes and shapes, recursively."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {b}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
        return
    assert type(a) is type(b), f"{where}: type {type(a)} != {type(b)}"
    if isinstance(a, tuple | list):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{k}]")
        return
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, (
            f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        )
        if a.dtype == object:
            for k, (x, y) in enumerate(zip(a, b, strict=True)):
                assert_same(x, y, f"{where}[{k}]")
            return
    assert np.array_equal(a, b), f"{where}: {a} != {b}"


def _policy_action(mask: np.ndarray, env: int, rng: np.random.Generator) -> int:
    """Even envs act at random, odd ones focus fire (wins), among the available actions."""
    if env % 2 == 0:
        return int(rng.choice(np.flatnonzero(mask)))
    attacks = np.flatnonzero(mask[6:])
    if attacks.size:
        return 6 + int(attacks[0])
    return 4 if mask[4] else int(np.flatnonzero(mask)[0])


def _actions(obs: dict[int, dict], ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.array([[_policy_action(m, int(j), rng) for m in obs[int(j)]["mask"]] for j in ids])


def test_matches_the_adapter_stack_exactly(pair: tuple[DummyVectorEnv, SMAXVectorEnv]) -> None:
    ref, venv = pair
    expected, got = ref.reset(), venv.reset()
    assert_same(expected, got, "reset")
    obs = dict(enumerate(expected[0]))
    rng = np.random.default_rng(0)
    outcomes = {"won": 0, "lost": 0, "truncated": 0, "partial": 0, "deaths": 0}
    for t in range(160):
        ids = np.arange(N_ENVS)
        if t % 3 == 1:  # a random subset, in random order, as np.int64 ids
            ids = rng.permutation(N_ENVS)[: rng.integers(1, N_ENVS + 1)]
            outcomes["partial"] += 1
        if t == 80:  # the "sum" aggregation of JointEnv, on both sides
            ref.set_env_attr("reward_aggregation", "sum")
            venv.reward_aggregation = "sum"
        act = _actions(obs, ids, rng)
        expected, got = ref.step(act, ids), venv.step(act, ids)
        assert_same(expected, got, f"step {t}")
        next_obs, _, terminated, truncated, infos = expected
        for k, j in enumerate(ids):
            obs[int(j)] = next_obs[k]
            outcomes["deaths"] += int(infos[k]["n_alive"] < N_AGENTS and not terminated[k])
        done = ids[terminated | truncated]
        for k in np.flatnonzero(terminated | truncated):
            won = infos[k]["battle_won"] == 1.0
            outcomes["truncated" if truncated[k] else "won" if won else "lost"] += 1
            final = next_obs[k]
            if terminated[k]:  # every agent terminated: nothing is shown
                assert not final["alive"].any() and not final["obs"].any()
        if done.size:
            kwargs = {"seed": 100 + t} if t % 5 == 0 else {}  # reseeded resets too
            expected, got = ref.reset(done, **kwargs), venv.reset(done, **kwargs)
            assert_same(expected, got, f"reset after step {t}")
            for k, j in enumerate(done):
                obs[int(j)] = expected[0][k]
        if t == 120:  # a reset in the middle of episodes
            expected, got = ref.reset([2, 0]), venv.reset([2, 0])
            assert_same(expected, got, "mid-episode reset")
            obs[2], obs[0] = expected[0]
    assert all(outcomes.values()), outcomes  # every kind of step and ending was compared
    ref.set_env_attr("reward_aggregation", "mean")
    venv.reward_aggregation = "mean"


def test_seed_gives_each_env_its_own_repeatable_episodes(
    pair: tuple[DummyVectorEnv, SMAXVectorEnv],
) -> None:
    _, venv = pair
    assert venv.seed(11) == [[11], [12], [13]]
    first, _ = venv.reset()
    assert not np.array_equal(first[0]["state"], first[1]["state"])  # env i uses seed 11 + i
    venv.reset()
    venv.seed([12, 11, 13])
    again, _ = venv.reset()
    assert_same(list(again), [first[1], first[0], first[2]])
    # reset(seed=s) reseeds, then resets: the episode seed() started (the adapter's too)
    reseeded, _ = venv.reset([2, 0], seed=[13, 11])
    assert_same(list(venv.reset([0, 2], seed=[11, 13])[0]), list(reseeded[::-1]))
    assert not np.array_equal(reseeded[1]["state"], first[0]["state"])


def test_partial_steps_leave_other_envs_untouched(
    pair: tuple[DummyVectorEnv, SMAXVectorEnv],
) -> None:
    import jax  # here, not at the top: the module imports without the smax extra

    _, venv = pair
    obs, _ = venv.reset()
    before = jax.device_get((venv._episode_keys, venv._states))
    rng = np.random.default_rng(1)
    act = _actions(dict(enumerate(obs)), np.array([1]), rng)
    venv.step(act, [1])
    after = jax.device_get((venv._episode_keys, venv._states))
    for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
        np.testing.assert_array_equal(old[[0, 2]], new[[0, 2]])
    leaves = zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
    assert any(not np.array_equal(old[1], new[1]) for old, new in leaves)
    assert venv._steps.tolist() == [0, 1, 0]


def test_finished_envs_wait_for_reset(pair: tuple[DummyVectorEnv, SMAXVectorEnv]) -> None:
    _, venv = pair
    obs, _ = venv.reset()
    obs = dict(enumerate(obs))
    rng = np.random.default_rng(2)
    done = np.zeros(N_ENVS, dtype=bool)
    while not done.any():
        ids = np.flatnonzero(~done)
        next_obs, _, term, trunc, _ = venv.step(_actions(obs, ids, rng), ids)
        for k, j in enumerate(ids):
            obs[int(j)] = next_obs[k]
        done[ids[term | trunc]] = True
    j = int(np.flatnonzero(done)[0])
    with pytest.raises(RuntimeError, match=f"env {j}: the episode is over"):
        venv.step(np.zeros((1, 3), dtype=np.int64), [j])
    others = np.flatnonzero(~done)
    if others.size:  # the others go on while env j waits
        venv.step(_actions(obs, others, rng), others)
    final = {key: value.copy() for key, value in obs[j].items()}
    fresh, infos = venv.reset(env_id=[j])
    assert_same(obs[j], final)  # the episode's last observation is not overwritten by the reset
    assert fresh[0]["alive"].all() and infos[0]["n_alive"] == 3 and infos[0]["battle_won"] == 0.0
    venv.step(_actions({j: fresh[0]}, np.array([j]), rng), [j])


def test_illegal_actions_raise_and_change_nothing(
    pair: tuple[DummyVectorEnv, SMAXVectorEnv],
) -> None:
    import jax  # here, not at the top: the module imports without the smax extra

    _, venv = pair
    obs, _ = venv.reset()
    mask = obs[1]["mask"]
    unavailable = int(np.flatnonzero(mask[2] == 0)[0])  # e.g. an enemy out of range, or no-op
    act = np.ones((N_ENVS, 3), dtype=np.int64)  # stop: always available to the living
    act[1, 2] = unavailable
    before = jax.device_get(venv._states)
    with pytest.raises(ValueError, match=f"env 1: action {unavailable} is unavailable for agent "):
        venv.step(act, [0, 1, 2])
    act[1, 2] = 99
    with pytest.raises(ValueError, match="env 1: action 99 of agent 'agent_2' is outside"):
        venv.step(act, [0, 1, 2])
    with pytest.raises(ValueError, match="shape"):
        venv.step(act[:2], [0, 1, 2])
    with pytest.raises(ValueError, match="integers"):
        venv.step(act.astype(float), [0, 1, 2])
    for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(venv._states), strict=True):
        np.testing.assert_array_equal(old, np.asarray(new))
    assert venv._steps.tolist() == [0, 0, 0]


def test_dead_agents_actions_are_ignored(pair: tuple[DummyVectorEnv, SMAXVectorEnv]) -> None:
    ref, venv = pair
    expected, got = ref.reset([0], seed=5), venv.reset([0], seed=5)
    assert_same(expected, got)
    obs = got[0][0]
    while obs["alive"].all():  # stand still (stop) until an agent dies
        act = np.ones((1, 3), dtype=np.int64)
        expected, got = ref.step(act, [0]), venv.step(act, [0])
        assert_same(expected, got)
        obs = got[0][0]
        assert not (got[2][0] or got[3][0]), "the episode ended without a death"
    dead = np.flatnonzero(obs["alive"] == 0)
    assert (obs["mask"][dead] == np.eye(9, dtype=np.int8)[0]).all()
    assert not obs["obs"][dead].any()
    rng = np.random.default_rng(3)
    act = np.array([[_policy_action(m, 0, rng) for m in obs["mask"]]])
    act[0, dead] = 7  # whatever a dead agent "chooses" (in range) is replaced by the no-op
    assert_same(ref.step(act, [0]), venv.step(act, [0]))


def test_one_compilation_for_any_subset(pair: tuple[DummyVectorEnv, SMAXVectorEnv]) -> None:
    _, venv = pair
    rng = np.random.default_rng(4)
    obs, _ = venv.reset()
    obs = dict(enumerate(obs))
    for ids in ([0], [2, 1], [0, 1, 2], [1]):
        ids = np.asarray(ids)
        next_obs, _, term, trunc, _ = venv.step(_actions(obs, ids, rng), ids)
        for k, j in enumerate(ids):
            obs[int(j)] = next_obs[k]
        done = ids[term | trunc]
        if done.size:
            for k, j in enumerate(done):
                obs[int(j)] = venv.reset(done)[0][k]
        fresh, _ = venv.reset(ids[:1])
        obs[int(ids[0])] = fresh[0]
    venv.seed(1)
    assert venv.cache_sizes() == {"reset": 1, "step": 1}


def test_vmap_batching_agrees_with_map(pair: tuple[DummyVectorEnv, SMAXVectorEnv]) -> None:
    """``vmap`` (the accelerator choice) may round a few features differently (1 ulp): the
    same episodes up to float tolerance."""
    _, mapped = pair
    vmapped = SMAXVectorEnv(MAP, N_ENVS, seed=7, episode_limit=LIMIT, batching="vmap")
    mapped.seed(7)
    expected, got = mapped.reset(), vmapped.reset()
    obs = dict(enumerate(expected[0]))
    rng = np.random.default_rng(5)
    ids = np.arange(N_ENVS)
    for t in range(60):
        act = _actions(obs, ids, rng)
        expected, got = mapped.step(act, ids), vmapped.step(act, ids)
        for k in ids:
            for key in ("obs", "state"):
                np.testing.assert_allclose(got[0][k][key], expected[0][k][key], atol=1e-6)
            for key in ("mask", "alive"):
                assert_same(got[0][k][key], expected[0][k][key], f"step {t} {key}")
        for part in (1, 2, 3, 4):
            assert_same(got[part], expected[part], f"step {t} part {part}")
        for k in ids:
            obs[int(k)] = expected[0][k]
        done = ids[expected[2] | expected[3]]
        if done.size:
            fresh, _ = mapped.reset(done)
            np.testing.assert_allclose(
                np.stack([o["state"] for o in vmapped.reset(done)[0]]),
                np.stack([o["state"] for o in fresh]),
                atol=1e-6,
            )
            for k, j in enumerate(done):
                obs[int(j)] = fresh[k]
    assert vmapped.cache_sizes() == {"reset": 1, "step": 1}
    vmapped.close()


def test_spaces_and_attributes(pair: tuple[DummyVectorEnv, SMAXVectorEnv]) -> None:
    ref, venv = pair
    assert len(venv) == venv.env_num == N_ENVS and not venv.is_async
    for key in ("episode_limit", "metric_keys", "n_agents", "n_actions", "noop_action"):
        assert venv.get_env_attr(key) == ref.get_env_attr(key), key
    assert venv.get_env_attr("episode_limit", 1) == [LIMIT]
    assert venv.action_space == ref.action_space  # per-env lists through __getattribute__
    assert venv.action_space[0] is not venv.action_space[1]
    assert venv.observation_space == ref.observation_space
    expected = EnvSpec.of(ref.workers[0].env)
    assert EnvSpec.of(venv.probe) == expected


def test_collector_fills_the_episode_buffer_as_the_adapter_does() -> None:
    cfg = load_config(
        "smax/3m",
        [
            "network.sharing=full",
            "network.hidden_dim=16",
            "env.num_train_envs=2",
            "env.num_test_envs=1",
            "replay.capacity_episodes=20",
            "replay.batch_episodes=4",
        ],
    )
    run = build_run(cfg)
    venv = SMAXVectorEnv.from_env_config(cfg.env, 2, seed=cfg.training.seed)
    assert EnvSpec.of(venv.probe) == run.spec == EnvSpec.of(make_joint(cfg.env))
    buffers = {"adapter": run.buffer}
    stats = {}
    with policy_within_training_step(run.policy):
        run.policy.set_eps_training(0.5)
        for name in ("adapter", "dicts", "batch"):
            if name == "adapter":
                collector = run.train_collector
            else:  # the two observation formats of SMAXVectorEnv, from the same seeds
                venv.obs_format = name
                venv.seed(cfg.training.seed)
                buffers[name] = EpisodeReplayBuffer(run.buffer.maxsize, 2, seed=cfg.training.seed)
                collector = Collector(run.policy, venv, buffers[name])
            run.policy.seed(0)
            collector.reset()
            stats[name] = collector.collect(n_episode=5)
        run.algorithm.update(buffers["batch"], 4)

    expected = run.buffer
    starts = expected.sample_indices(None)
    assert len(starts) >= 5  # complete episodes, ready for the learner
    for name in ("dicts", "batch"):
        assert stats[name].n_collected_episodes == stats["adapter"].n_collected_episodes
        np.testing.assert_array_equal(stats[name].lens, stats["adapter"].lens)
        np.testing.assert_array_equal(stats[name].returns, stats["adapter"].returns)
        # the same transitions in the same slots, and the same episodes for the learner
        got = buffers[name]
        for key in ("act", "rew", "terminated", "truncated", "done"):
            assert_same(expected._meta[key], got._meta[key], key)
        for key in ("obs", "state", "mask", "alive"):
            assert_same(expected._meta.obs[key], got._meta.obs[key], key)
        np.testing.assert_array_equal(got.sample_indices(None), starts)
        episodes, replayed = expected.episode_batch(starts), got.episode_batch(starts)
        for key in ("act", "rew", "terminated", "truncated", "valid", "lengths"):
            assert_same(episodes[key], replayed[key], key)
        for key in ("obs", "state", "mask", "alive"):  # and the observation after the last step
            assert_same(episodes.obs[key], replayed.obs[key], key)
    run.close()
    venv.close()
