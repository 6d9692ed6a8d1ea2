"""The Google Research Football adapter on the real gfootball env (skipped without gfootball)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from bdps_agents.adapters.grf import ACTION_NAMES, GRFParallelEnv
from bdps_agents.adapters.grf.view import (
    OTHER_SLOT,
    encode_observations,
    initial_headings,
    obs_layout,
    other_indices,
    update_headings,
    visible_mask,
)
from bdps_agents.joint_env import JointEnv

pytestmark = pytest.mark.requires(module="gfootball", extra="grf")

IDLE, RIGHT = 0, 5


@pytest.fixture(scope="module")
def env() -> Iterator[GRFParallelEnv]:
    env = GRFParallelEnv("academy_3_vs_1_with_keeper")
    yield env
    env.close()


@pytest.fixture(scope="module")
def other_env() -> Iterator[GRFParallelEnv]:
    env = GRFParallelEnv("academy_3_vs_1_with_keeper", seed=77)
    yield env
    env.close()


def _actions(rng: np.random.Generator, agents: list[str]) -> dict[str, int]:
    return {a: int(rng.integers(len(ACTION_NAMES))) for a in agents}


def _rollout(env: GRFParallelEnv, seed: int | None, action_seed: int = 0, steps: int = 60) -> list:
    rng = np.random.default_rng(action_seed)
    obs, infos = env.reset(seed=seed)
    trace: list[Any] = [obs, infos, env.state()]
    for _ in range(steps):
        if not env.agents:
            break
        step = env.step(_actions(rng, env.agents))
        trace.extend([*step, env.state()])
    return trace


# ----------------------------------------------------------------------------- API
def test_spaces_agents_and_limits(env: GRFParallelEnv) -> None:
    assert env.possible_agents == ["agent_0", "agent_1", "agent_2", "agent_3"]
    assert (env.n_left, env.n_right) == (4, 2)
    assert env.observation_space("agent_0").shape == (43,)
    assert env.state_space.shape == (57,)
    assert env.action_space("agent_3").n == 19 and env.noop_action == 0
    assert env.episode_limit == 401 and env.game_duration == 400
    obs, infos = env.reset(seed=0)
    assert env.raw_observation["steps_left"] == env.episode_limit
    assert obs["agent_0"].dtype == np.float32 and env.state().dtype == np.float32
    mask = infos["agent_2"]["action_mask"]
    assert mask.dtype == np.int8 and mask.tolist() == [1] * 19
    # agent_i is left player i: own position = the raw obs' left_team[i]
    lay = obs_layout(4, 2)
    for i, agent in enumerate(env.possible_agents):
        np.testing.assert_allclose(obs[agent][lay["self_pos"]], env.raw_observation["left_team"][i])
    np.testing.assert_array_equal(env.headings, initial_headings(4))  # +x at kick-off
    with pytest.raises(ValueError, match="agent_9"):
        env.observation_space("agent_9")


def test_pass_and_shoot_controls_three_players() -> None:
    env = GRFParallelEnv("academy_pass_and_shoot_with_keeper", rewards="scoring")
    try:
        obs, _ = env.reset(seed=1)
        assert env.possible_agents == ["agent_0", "agent_1", "agent_2"]
        assert obs["agent_0"].shape == (38,) and env.state().shape == (50,)
        _, rewards, *_ = env.step(dict.fromkeys(env.agents, RIGHT))
        assert set(rewards) == set(env.possible_agents)
    finally:
        env.close()


# ----------------------------------------------------------------------------- seeding
def test_seed_determines_episode(
    same_nested, env: GRFParallelEnv, other_env: GRFParallelEnv
) -> None:
    reference = _rollout(env, seed=3)
    _rollout(other_env, seed=11, action_seed=5)  # a different history first
    assert same_nested(reference, _rollout(other_env, seed=3))
    assert same_nested(reference, _rollout(env, seed=3))
    different = _rollout(env, seed=4)
    assert any(
        not np.array_equal(x, y)
        for x, y in zip(reference[2::6], different[2::6], strict=False)  # states
    )


def test_reset_seed_matches_a_fresh_gfootball_env(env: GRFParallelEnv) -> None:
    import gfootball.env as football_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw_env = football_env.create_environment(
            env_name="academy_3_vs_1_with_keeper",
            representation="raw",
            number_of_left_players_agent_controls=4,
            rewards="scoring,checkpoints",
            render=False,
            other_config_options={"game_engine_random_seed": 7},
        )
    try:
        _rollout(env, seed=2)  # the adapter's engine held another seed before
        env.reset(seed=7)
        raw = raw_env.reset()
        rng = np.random.default_rng(1)
        for _ in range(40):
            np.testing.assert_array_equal(env.raw_observation["left_team"], raw[0]["left_team"])
            np.testing.assert_array_equal(env.raw_observation["ball"], raw[0]["ball"])
            if not env.agents:
                break
            actions = _actions(rng, env.agents)
            _, rewards, *_ = env.step(actions)
            raw, raw_reward, _, _ = raw_env.step([actions[a] for a in env.possible_agents])
            np.testing.assert_array_equal(list(rewards.values()), raw_reward)
    finally:
        raw_env.close()


def test_unseeded_resets_vary_but_are_reproducible(same_nested, env: GRFParallelEnv) -> None:
    def episodes() -> list:
        env.reset(seed=21)
        return [_rollout(env, seed=None, steps=25) for _ in range(3)]

    first, second = episodes(), episodes()
    assert same_nested(first, second)
    states = [ep[2::6] for ep in first]
    assert not all(
        len(states[0]) == len(s)
        and all(np.array_equal(x, y) for x, y in zip(states[0], s, strict=True))
        for s in states[1:]
    )
    # the first unseeded episode after construction uses the constructor's seed
    fresh = GRFParallelEnv("academy_3_vs_1_with_keeper", seed=21)
    try:
        assert same_nested(_rollout(fresh, seed=None), _rollout(env, seed=21))
    finally:
        fresh.close()


# ----------------------------------------------------------------------------- episode ends
def test_truncation_when_time_runs_out() -> None:
    # gfootball's multi-agent example scenario: the 3-vs-1 academy with a 100-step game.
    # Standing still with engine seed 0, nobody takes the ball before the time is up.
    env = GRFParallelEnv("test_example_multiagent")
    try:
        assert env.episode_limit == 101
        env.reset(seed=0)
        for t in range(env.episode_limit):
            _, _, terms, truncs, infos = env.step(dict.fromkeys(env.agents, IDLE))
            assert not any(terms.values())
            assert all(truncs.values()) == (t == env.episode_limit - 1)
        assert env.agents == [] and env.raw_observation["steps_left"] == 0
        assert set(truncs) == set(env.possible_agents)
        assert infos["agent_0"]["goal_score"] == 0.0
        with pytest.raises(RuntimeError, match="reset"):
            env.step(dict.fromkeys(env.possible_agents, IDLE))
    finally:
        env.close()


def test_termination_before_the_time_limit(env: GRFParallelEnv) -> None:
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    steps = 0
    while env.agents:
        _, _, terms, truncs, _ = env.step(_actions(rng, env.agents))
        steps += 1
    assert steps < env.episode_limit
    assert all(terms.values()) and not any(truncs.values())


def test_goal_terminates_and_sets_metrics() -> None:
    # In academy_empty_goal (one field player with the ball, the goal empty) running right scores.
    env = GRFParallelEnv("academy_empty_goal")
    try:
        _, infos = env.reset(seed=0)
        assert {k: infos["agent_1"][k] for k in env.metric_keys} == dict.fromkeys(
            env.metric_keys, 0.0
        )
        team_return = 0.0
        while env.agents:
            _, rewards, terms, truncs, infos = env.step(dict.fromkeys(env.agents, RIGHT))
            team_return += sum(rewards.values())
        assert all(terms.values()) and not any(truncs.values())
        for agent in env.possible_agents:
            assert infos[agent]["goal_score"] == 1.0
            assert infos[agent]["score_reward"] == 1.0
            assert (infos[agent]["goals_for"], infos[agent]["goals_against"]) == (1.0, 0.0)
        # scoring pays 1 per player and completes the 10 checkpoints (0.1 each) of each player
        assert team_return == pytest.approx(2 * (1.0 + 1.0))
    finally:
        env.close()


# ----------------------------------------------------------------------------- partial view
def _leaks(obs: np.ndarray, secrets: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Secret values found in ``obs`` that do not also have a legitimate source."""
    secrets = secrets[(secrets != 0.0) & ~np.isin(secrets, allowed)]
    return secrets[np.isin(secrets, obs)]


def test_unseen_players_are_really_hidden(env: GRFParallelEnv) -> None:
    lay = obs_layout(env.n_left, env.n_right)
    idx = other_indices(env.n_left, env.n_right)
    rng = np.random.default_rng(5)
    n_hidden = n_seen = caught_leaky = 0
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        headings = initial_headings(env.n_left)  # tracked here, independently of the adapter
        while True:
            raw = env.raw_observation
            headings = update_headings(headings, raw["left_team_direction"])
            np.testing.assert_allclose(env.headings, headings)
            pos64 = np.concatenate([raw["left_team"], raw["right_team"]])
            pos = pos64.astype(np.float32)
            vel = np.concatenate([raw["left_team_direction"], raw["right_team_direction"]])
            vel = vel.astype(np.float32)
            ball64 = np.asarray(raw["ball"], dtype=np.float64)
            ball = np.concatenate([ball64, raw["ball_direction"]]).astype(np.float32)
            vis = visible_mask(raw["left_team"], headings, pos64)
            leaky = encode_observations(raw, headings, env.view, np.ones_like(vis))
            for i, agent in enumerate(env.possible_agents):
                o = obs[agent]
                slots = o[lay["others"]].reshape(-1, OTHER_SLOT)
                seen = vis[i, idx[i]]
                np.testing.assert_array_equal(slots[:, 0], seen.astype(np.float32))
                np.testing.assert_array_equal(slots[~seen], 0.0)
                n_hidden += int((~seen).sum())
                n_seen += int(seen.sum())
                # Values the agent may legitimately hold, from the raw obs (not from `o`): its own
                # position, motion and heading, the ball, and everything about the players it sees.
                visible_ids = idx[i][seen]
                allowed = np.concatenate(
                    [
                        pos[i],
                        vel[i],
                        headings[i].astype(np.float32),
                        ball,
                        (ball64[:2] - pos64[i]).astype(np.float32),
                        pos[visible_ids].ravel(),
                        (pos64[visible_ids] - pos64[i]).astype(np.float32).ravel(),
                        vel[visible_ids].ravel(),
                    ]
                )
                hidden = idx[i][~seen]
                rel = (pos64[hidden] - pos64[i]).astype(np.float32)  # as the encoder rounds
                secrets = np.concatenate([pos[hidden].ravel(), rel.ravel(), vel[hidden].ravel()])
                assert not _leaks(o, secrets, allowed).size, (agent, hidden)
                # the same check does catch an observation that shows everyone
                caught_leaky += bool(_leaks(leaky[i], secrets, allowed).size)
            if not env.agents:
                break
            obs, *_ = env.step(_actions(rng, env.agents))
    assert n_hidden > 100 and n_seen > 100
    assert caught_leaky > 50


def test_visibility_changes_with_heading(env: GRFParallelEnv) -> None:
    # agent_1 starts next to the ball facing +x; turning round (LEFT) hides the players ahead.
    obs, _ = env.reset(seed=0)
    lay = obs_layout(env.n_left, env.n_right)
    ahead = obs["agent_1"][lay["others"]].reshape(-1, OTHER_SLOT)[:, 0].copy()
    assert ahead[3:].all()  # both opponents (ahead of it at kick-off) are visible
    actions = dict.fromkeys(env.agents, IDLE) | {"agent_1": 1}  # 1 = left
    for _ in range(8):
        obs, *_ = env.step(actions)
        if not env.agents:
            break
    assert env.headings[1][0] < 0
    behind = obs["agent_1"][lay["others"]].reshape(-1, OTHER_SLOT)[:, 0]
    assert not behind[3:].any()


# ----------------------------------------------------------------------------- bridge
def test_through_joint_env(env: GRFParallelEnv) -> None:
    joint = JointEnv(env, reward_aggregation="mean")
    assert (joint.n_agents, joint.n_actions, joint.obs_dim, joint.state_dim) == (4, 19, 43, 57)
    assert joint.episode_limit == 401 and joint.metric_keys == env.metric_keys
    obs, info = joint.reset(seed=0)
    assert obs["obs"].shape == (4, 43) and obs["state"].shape == (57,)
    assert set(info) == {"n_alive", *env.metric_keys}
    rng = np.random.default_rng(0)
    terminated = truncated = False
    steps = 0
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = joint.step(rng.integers(19, size=4))
        assert isinstance(reward, float) and set(info) == {"n_alive", *env.metric_keys}
        steps += 1
    assert steps <= joint.episode_limit and info["n_alive"] == 0


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"env_name": "no_such_scenario"}, "unknown gfootball scenario"),
        ({"env_name": "../academy_corner"}, "env_name"),
        ({"env_name": 3}, "env_name"),
        ({"view_distance": 0.0}, "view_distance"),
        ({"view_cone_deg": 400.0}, "view_cone_deg"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"rewards": "checkpoints"}, "rewards"),
        ({"rewards": "scoring,goals"}, "rewards"),
        ({"rewards": None}, "rewards"),
        ({"heading_eps": 0.0}, "heading_eps"),
    ],
)
def test_bad_constructor_args(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GRFParallelEnv(**kwargs)


@pytest.mark.parametrize(
    ("actions", "match"),
    [
        ({"agent_0": 19, "agent_1": 0, "agent_2": 0, "agent_3": 0}, "agent_0"),
        ({"agent_0": 0, "agent_1": 0, "agent_2": 0}, "agent_3"),
        ({"agent_0": 0.0, "agent_1": 0, "agent_2": 0, "agent_3": 0}, "agent_0"),
    ],
)
def test_bad_actions(env: GRFParallelEnv, actions: dict[str, Any], match: str) -> None:
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(actions)
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=-3)
