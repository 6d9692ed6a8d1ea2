"""The ``smax`` adapter (SMAC semantics over real SMAX) through PettingZoo, JointEnv and training.

jaxmarl is looked up with ``find_spec`` (not imported at collection): see the ``requires`` marker
in conftest.py.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from bdps_agents.adapters import make_env
from bdps_agents.adapters.smac import SMACParallelEnv
from bdps_agents.config import ConfigError
from bdps_agents.joint_env import JointEnv
from bdps_agents.presets import load_config
from bdps_agents.training import train

pytestmark = pytest.mark.requires(module="jaxmarl", extra="smax")

MAP = "3m"


@pytest.fixture(scope="module")
def env() -> SMACParallelEnv:
    return make_env("smax", map_name=MAP, seed=0)


def _trajectory(env: SMACParallelEnv, seed: int, action_seed: int = 0) -> list:
    """Everything the adapter returns in one episode, under seeded random available actions."""
    rng = np.random.default_rng(action_seed)
    obs, infos = env.reset(seed=seed)
    steps = [(obs, infos)]
    while env.agents:
        actions = {a: _random(infos[a]["action_mask"], rng) for a in env.agents}
        obs, rewards, terms, truncs, infos = env.step(actions)
        steps.append((obs, rewards, terms, truncs, infos, env.state().copy()))
    return steps


def test_seeded_episodes_repeat(same_nested, env: SMACParallelEnv) -> None:
    # (pettingzoo's parallel_seed_test samples actions without masks; our trajectories use them)
    other = make_env("smax", map_name=MAP, seed=123)  # the constructor seed is overridden
    first = _trajectory(env, seed=42)
    _trajectory(env, seed=7)  # whatever ran before does not matter
    assert same_nested(first, _trajectory(other, seed=42))
    assert not same_nested(first[0], _trajectory(env, seed=43)[0])  # another seed, another start


def test_smax_adapter_follows_smac_layout(env: SMACParallelEnv) -> None:
    _obs, infos = env.reset(seed=0)
    smax = env.env
    assert env.possible_agents == [f"agent_{i}" for i in range(smax.n_agents)]
    assert env.action_space("agent_0").n == 6 + smax.n_enemies  # SMAC numbering
    assert env.episode_limit == 60  # SMAC's limit for 3m
    assert env.state().shape == (smax.get_state_size(),) and env.state().dtype == np.float32
    for agent in env.agents:
        assert infos[agent]["action_mask"][0] == 0  # the no-op is for the dead only
        assert infos[agent]["battle_won"] == 0.0


def _play(env: SMACParallelEnv, policy, seed: int) -> dict:
    """One episode; returns what the episode looked like from the adapter's side."""
    rng = np.random.default_rng(seed)
    obs, infos = env.reset(seed=seed)
    deaths, steps, total = [], 0, 0.0
    while env.agents:
        actions = {a: policy(infos[a]["action_mask"], rng) for a in env.agents}
        obs, rewards, terms, truncs, infos = env.step(actions)
        steps += 1
        total += next(iter(rewards.values()))
        assert len(set(rewards.values())) == 1  # one team reward for all
        for agent, done in terms.items():
            if done and env.agents:  # died while the battle goes on
                deaths.append(agent)
                assert not obs[agent].any()
                np.testing.assert_array_equal(infos[agent]["action_mask"][:2], [1, 0])
    last = next(iter(infos.values()))
    return {
        "terms": terms,
        "truncs": truncs,
        "info": last,
        "steps": steps,
        "return": total,
        "deaths": deaths,
    }


def _random(mask: np.ndarray, rng: np.random.Generator) -> int:
    return int(rng.choice(np.flatnonzero(mask)))


def _aggressive(mask: np.ndarray, rng: np.random.Generator) -> int:
    attacks = np.flatnonzero(mask[6:])
    if attacks.size:
        return 6 + int(attacks[0])  # focus fire on the lowest-index enemy in range
    return 4 if mask[4] else int(np.flatnonzero(mask)[0])  # walk east, towards the enemy


def test_episodes_end_as_smac_would(env: SMACParallelEnv) -> None:
    outcomes = [_play(env, _aggressive, seed) for seed in range(6)]
    outcomes += [_play(env, _random, seed) for seed in range(6)]
    for out in outcomes:
        info = out["info"]
        if out["steps"] == env.episode_limit and info["battle_won"] == 0.0:
            assert all(out["truncs"].values())
        else:
            assert all(out["terms"].values()) and not any(out["truncs"].values())
        if info["battle_won"]:
            assert info["dead_enemies"] == env.env.n_enemies
            assert out["return"] > 1.0  # win bonus on top of the damage dealt
    results = {o["info"]["battle_won"] for o in outcomes}
    assert results == {0.0, 1.0}, "focus fire should win some battles and random play lose some"
    assert any(o["deaths"] for o in outcomes)


def test_joint_env_over_smax(env: SMACParallelEnv) -> None:
    joint = JointEnv(env, "mean")
    obs, info = joint.reset(seed=1)
    assert obs["mask"].shape == (3, 9) and info["n_alive"] == 3
    done, rng = False, np.random.default_rng(0)
    while not done:
        actions = np.array(
            [
                _random(m, rng) if alive else 0
                for m, alive in zip(obs["mask"], obs["alive"], strict=True)
            ]
        )
        obs, _reward, terminated, truncated, info = joint.step(actions)
        done = terminated or truncated
        dead = obs["alive"] == 0
        assert not obs["obs"][dead].any()
        assert (obs["mask"][dead, 0] == 1).all()
    assert info["n_alive"] == 3 - info["dead_allies"]


@pytest.mark.parametrize("algo", ["qmix", "bdps"])
def test_trains_on_smax_and_logs_win_rate(tmp_path: Path, algo: str) -> None:
    cfg = load_config(
        "smax/3m",
        [
            f"algorithm.name={algo}",
            "network.hidden_dim=16",
            "env.num_train_envs=2",
            "env.num_test_envs=2",
            "replay.capacity_episodes=20",
            "replay.batch_episodes=4",
            "replay.warmup_episodes=2",
            "training.total_steps=240",
            "training.test_interval=120",
            "training.test_episodes=2",
            "training.steps_per_update=40",
            "training.log_interval=40",
            "training.progress=false",
        ],
    )
    result = train(cfg, tmp_path)
    assert 0.0 <= result.final_metrics["win_rate"] <= 1.0
    with (tmp_path / "metrics.csv").open() as f:
        metrics = {(r["scope"], r["metric"]) for r in csv.DictReader(f)}
    assert {("test", "win_rate"), ("test", "dead_enemies"), ("update", "loss")} <= metrics


def test_subprocess_workers_run_smax(config_with, tmp_path: Path) -> None:
    """Subprocess envs after jax started in this process (a fork could deadlock: spawned)."""
    cfg = config_with(
        {"env": {"adapter": "smax", "kwargs": {"map_name": MAP}, "reward_aggregation": "mean"}},
        env={"num_train_envs": 2, "num_test_envs": 2, "vector_env": "subproc"},
        replay={"capacity_episodes": 20, "batch_episodes": 4, "warmup_episodes": 2},
        network={"hidden_dim": 16},
        training={
            "total_steps": 120,
            "test_interval": 120,
            "test_episodes": 2,
            "steps_per_update": 40,
            "progress": False,
        },
    )
    result = train(cfg, tmp_path)
    assert result.env_steps >= 120 and "win_rate" in result.final_metrics


def test_trains_with_batched_smax_vector_env(config_with, tmp_path: Path) -> None:
    cfg = config_with(
        {"env": {"adapter": "smax", "kwargs": {"map_name": MAP}, "reward_aggregation": "mean"}},
        env={"num_train_envs": 4, "num_test_envs": 2, "vector_env": "smax_batched"},
        replay={"capacity_episodes": 20, "batch_episodes": 4, "warmup_episodes": 4},
        algorithm={"name": "bdps"},
        network={"hidden_dim": 16},
        bdps={"role_interval": 5, "group_interval_multiple": 2},
        training={
            "total_steps": 240,
            "test_interval": 120,
            "test_episodes": 2,
            "steps_per_update": 40,
            "progress": False,
        },
    )
    result = train(cfg, tmp_path)
    assert result.env_steps >= 240 and 0.0 <= result.final_metrics["win_rate"] <= 1.0
    with pytest.raises(ConfigError, match="smax_batched"):
        config_with({"env": {"adapter": "lbf", "vector_env": "smax_batched"}})
