"""SMAXStarCraft2Env: jaxmarl's SMAX behind oxwhirl/smac's StarCraft2Env API.

jaxmarl is looked up with ``find_spec`` rather than ``pytest.importorskip``: importing it at
collection would start jax's runtime threads in the whole pytest process (jaxmarl builds arrays at
import), and every test that later forks worker processes would get jax's fork warning. jax is
imported inside the tests that need it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from functools import partial
from typing import Any

import numpy as np
import pytest

from bdps_agents.adapters.smax import (  # jax-free
    SMAC_EPISODE_LIMITS,
    SMAXStarCraft2Env,
    smac_to_smax_actions,
    smax_reset,
    smax_step,
)

pytestmark = pytest.mark.requires(module="jaxmarl", extra="smax")

MAP = "3m"
STOP, NORTH, SOUTH, EAST, WEST, FIRST_ATTACK = 1, 2, 3, 4, 5, 6


@pytest.fixture(scope="module")
def env() -> SMAXStarCraft2Env:
    return SMAXStarCraft2Env(MAP, seed=0)


@pytest.fixture(scope="module")
def short_env() -> SMAXStarCraft2Env:
    # the armies start ~16 apart and close in at most ~3 per step: nobody can die in 2 steps
    return SMAXStarCraft2Env(MAP, seed=0, episode_limit=2)


def random_actions(env: SMAXStarCraft2Env, rng: np.random.Generator) -> list[int]:
    """A uniformly random available action per agent."""
    return [int(rng.choice(np.flatnonzero(row))) for row in env.get_avail_actions_array()]


def focus_fire(env: SMAXStarCraft2Env, rng: np.random.Generator | None = None) -> list[int]:
    """Attack the first enemy in range, else walk east towards the enemy army."""
    actions = []
    for row in env.get_avail_actions_array():
        targets = np.flatnonzero(row[FIRST_ATTACK:])
        if row[0]:
            actions.append(0)
        elif len(targets):
            actions.append(FIRST_ATTACK + int(targets[0]))
        else:
            actions.append(EAST)
    return actions


def idle(env: SMAXStarCraft2Env, rng: np.random.Generator | None = None) -> list[int]:
    return [0 if row[0] else STOP for row in env.get_avail_actions_array()]


def play(env: SMAXStarCraft2Env, policy: Any, seed: int) -> list[tuple[Any, ...]]:
    """One episode from ``reseed(seed)``; returns per-step (obs, state, avail, r, term, info)."""
    rng = np.random.default_rng(seed)
    env.reseed(seed)
    obs, state = env.reset()
    trace: list[tuple[Any, ...]] = [(np.stack(obs), state, env.get_avail_actions_array())]
    terminated = False
    while not terminated:
        reward, terminated, info = env.step(policy(env, rng))
        trace.append(
            (
                env.get_obs_array(),
                env.get_state(),
                env.get_avail_actions_array(),
                reward,
                terminated,
                info,
            )
        )
    return trace


def smax_ally_avail(env: SMAXStarCraft2Env) -> np.ndarray:
    masks = env.smax_env.get_avail_actions(env.smax_state)
    return np.stack([np.asarray(masks[agent]) for agent in env.smax_env.agents])


def ally_alive(env: SMAXStarCraft2Env) -> np.ndarray:
    return np.asarray(env.smax_state.state.unit_alive[: env.n_agents])


# -- shapes and API surface ------------------------------------------------------------------------


def test_env_info_matches_returned_arrays(env: SMAXStarCraft2Env) -> None:
    env.reseed(0)
    obs, state = env.reset()
    info = env.get_env_info()
    assert info["n_agents"] == env.n_agents == env.smax_env.num_agents == 3
    assert info["episode_limit"] == env.episode_limit == SMAC_EPISODE_LIMITS[MAP]
    assert info["n_actions"] == env.get_total_actions() == env.n_actions
    assert env.n_actions == env.smax_env.action_spaces["ally_0"].n + 1 == 6 + env.n_enemies
    assert len(obs) == env.n_agents
    for i, vec in enumerate(obs):
        assert vec.shape == (info["obs_shape"],) == (env.get_obs_size(),)
        assert vec.dtype == np.float32
        np.testing.assert_array_equal(vec, env.get_obs_agent(i))
    assert state.shape == (info["state_shape"],) == (env.get_state_size(),)
    assert state.dtype == np.float32
    np.testing.assert_array_equal(env.get_state(), state)

    obs_array = env.get_obs_array()
    assert obs_array.shape == (env.n_agents, info["obs_shape"]) and obs_array.dtype == np.float32
    assert obs_array.flags.writeable  # like SMAC's fresh arrays (torch warns on read-only ones)
    avail = env.get_avail_actions_array()
    assert avail.shape == (env.n_agents, env.n_actions) and avail.dtype == np.int8
    lists = env.get_avail_actions()
    assert lists == avail.tolist()
    assert all(type(v) is int for row in lists for v in row)
    assert env.get_avail_agent_actions(1) == lists[1]


def test_episode_limit_defaults_and_validation() -> None:
    bigger = SMAXStarCraft2Env("5m_vs_6m")
    assert bigger.episode_limit == SMAC_EPISODE_LIMITS["5m_vs_6m"]
    assert (bigger.n_agents, bigger.n_enemies, bigger.n_actions) == (5, 6, 12)
    assert SMAXStarCraft2Env(MAP, episode_limit=7).get_env_info()["episode_limit"] == 7

    with pytest.raises(ValueError, match="supported maps:") as excinfo:
        SMAXStarCraft2Env("no_such_map")
    for name in SMAC_EPISODE_LIMITS:
        assert name in str(excinfo.value)
    with pytest.raises(ValueError, match="episode_limit"):
        SMAXStarCraft2Env("smacv2_5_units")  # a SMAX map that SMAC does not have
    assert SMAXStarCraft2Env("smacv2_5_units", episode_limit=50).episode_limit == 50
    for bad in (0, -3):
        with pytest.raises(ValueError, match=">= 1"):
            SMAXStarCraft2Env(MAP, episode_limit=bad)
    with pytest.raises(ValueError, match="max_steps"):
        SMAXStarCraft2Env(MAP, max_steps=10)


def test_stats_and_seed_before_any_episode() -> None:
    fresh = SMAXStarCraft2Env(MAP, seed=11)
    stats = fresh.get_stats()
    assert stats["battles_game"] == stats["battles_won"] == 0 and stats["win_rate"] == 0.0
    assert fresh.seed() == 11
    fresh.reseed(12)
    assert fresh.seed() == 12
    with pytest.raises(RuntimeError, match="reset"):
        fresh.step([STOP] * fresh.n_agents)
    with pytest.raises(RuntimeError, match="reset"):
        fresh.get_obs()
    fresh.close()


# -- actions and masks -----------------------------------------------------------------------------


def test_action_mapping_table() -> None:
    smac = np.arange(6 + 3)
    smax = np.asarray(smac_to_smax_actions(smac))
    # no-op and stop -> SMAX stop 4; N, S, E, W -> SMAX 0, 2, 1, 3; attack 6 + j -> 5 + j
    np.testing.assert_array_equal(smax, [4, 4, 0, 2, 1, 3, 5, 6, 7])


def test_moves_follow_the_compass(env: SMAXStarCraft2Env) -> None:
    env.reseed(1)
    env.reset()
    compass = {NORTH: (0.0, 1.0), SOUTH: (0.0, -1.0), EAST: (1.0, 0.0), WEST: (-1.0, 0.0)}
    for action, direction in compass.items():
        before = np.asarray(env.smax_state.state.unit_positions[0])
        env.step([action] + [STOP] * (env.n_agents - 1))
        moved = np.asarray(env.smax_state.state.unit_positions[0]) - before
        assert np.linalg.norm(moved) > 0.5
        # along the expected axis (SMAX's y grows northwards, as in SC2)
        assert moved @ np.asarray(direction) > 0.99 * np.linalg.norm(moved), (action, moved)
    allies = slice(0, env.n_agents)  # the enemies keep moving
    before = np.asarray(env.smax_state.state.unit_positions[allies])
    env.step([STOP] * env.n_agents)
    np.testing.assert_allclose(np.asarray(env.smax_state.state.unit_positions[allies]), before)


def test_avail_columns_align_with_smax_and_attacks_map(env: SMAXStarCraft2Env) -> None:
    env.reseed(2)
    env.reset()
    terminated, attacks_seen = False, 0
    while not terminated:
        ours, theirs, alive = env.get_avail_actions_array(), smax_ally_avail(env), ally_alive(env)
        for i in np.flatnonzero(alive):
            assert ours[i, 0] == 0  # a live agent never has the no-op
            assert ours[i, STOP] == theirs[i, 4] == 1
            np.testing.assert_array_equal(ours[i, [NORTH, EAST, SOUTH, WEST]], theirs[i, :4])
            np.testing.assert_array_equal(ours[i, FIRST_ATTACK:], theirs[i, 5:])
        actions = focus_fire(env)
        _, terminated, _ = env.step(actions)
        # SMAX records the attack it decoded: SMAC 6 + j must arrive as SMAX 5 + j
        prev_attacks = np.asarray(env.smax_state.state.prev_attack_actions[: env.n_agents])
        for i, action in enumerate(actions):
            if action >= FIRST_ATTACK:
                attacks_seen += 1
                assert prev_attacks[i] == action - 1
            else:
                assert prev_attacks[i] == 0  # SMAX's "no attack"
    assert attacks_seen > 0


def test_dead_agents_have_only_noop_and_zero_obs(env: SMAXStarCraft2Env) -> None:
    checked_dead = False
    for seed in range(20):
        rng = np.random.default_rng(seed)
        env.reseed(seed)
        env.reset()
        terminated = False
        while not terminated:
            avail, obs, alive = env.get_avail_actions_array(), env.get_obs_array(), ally_alive(env)
            assert np.all(avail[alive, 0] == 0)
            for i in np.flatnonzero(~alive):
                checked_dead = True
                assert env.get_avail_agent_actions(i) == [1] + [0] * (env.n_actions - 1)
                assert not np.any(obs[i]) and not np.any(env.get_obs_agent(i))
                wrong = random_actions(env, rng)
                wrong[i] = STOP
                with pytest.raises(ValueError, match=f"agent {i}: action {STOP}"):
                    env.step(wrong)
            _, terminated, info = env.step(random_actions(env, rng))
            assert info["dead_allies"] == np.count_nonzero(~ally_alive(env))
        if checked_dead:
            break
    assert checked_dead, "no ally died in 20 random episodes"


def test_illegal_actions_raise_value_error(env: SMAXStarCraft2Env) -> None:
    env.reseed(3)
    env.reset()
    n, legal = env.n_agents, [STOP] * env.n_agents
    with pytest.raises(ValueError, match=f"expected {n} integer actions"):
        env.step(legal[:-1])
    with pytest.raises(ValueError, match="integer actions"):
        env.step([1.0] * n)
    with pytest.raises(ValueError, match=f"agent 1: action {env.n_actions} is outside"):
        env.step([STOP, env.n_actions, STOP])
    with pytest.raises(ValueError, match="agent 0: action -1 is outside"):
        env.step([-1, STOP, STOP])
    with pytest.raises(ValueError, match="agent 2: action 0 is not available"):
        env.step([STOP, STOP, 0])  # the no-op is for dead agents only
    out_of_range = [int(a) for a in np.flatnonzero(env.get_avail_actions_array()[0] == 0)]
    with pytest.raises(ValueError, match="agent 0"):
        env.step([out_of_range[-1], STOP, STOP])  # an attack on an enemy out of range
    assert env.episode_steps == 0  # refused actions do not advance the episode
    env.step(legal)
    assert env.episode_steps == 1


def test_step_after_termination_raises(env: SMAXStarCraft2Env) -> None:
    play(env, focus_fire, seed=4)
    with pytest.raises(RuntimeError, match="terminated"):
        env.step(idle(env))
    env.reset()  # and a new episode can start
    env.step(idle(env))


# -- episodes, rewards, determinism ----------------------------------------------------------------


def test_reseed_makes_episodes_deterministic(env: SMAXStarCraft2Env) -> None:
    first, second = play(env, random_actions, seed=5), play(env, random_actions, seed=5)
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        for x, y in zip(a, b, strict=True):
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y)
            else:
                assert x == y
    other = play(env, random_actions, seed=6)
    assert not np.array_equal(first[0][0], other[0][0])  # another seed, another start
    # without reseeding, consecutive resets draw new episodes
    env.reseed(5)
    start_a = env.reset()[0]
    start_b = env.reset()[0]
    assert not np.array_equal(np.stack(start_a), np.stack(start_b))


def test_battle_outcomes_and_info(env: SMAXStarCraft2Env) -> None:
    games_before, wins_before = env.get_stats()["battles_game"], env.get_stats()["battles_won"]
    wins = 0
    n_episodes = 8
    for seed in range(n_episodes):
        trace = play(env, focus_fire, seed=100 + seed)
        for *_, terminated, info in trace[1:-1]:
            assert not terminated and not info["battle_won"] and "episode_limit" not in info
        *_, reward, terminated, info = trace[-1]
        assert terminated
        assert set(info) >= {"battle_won", "dead_allies", "dead_enemies"}
        allies_all_dead = info["dead_allies"] == env.n_agents
        enemies_all_dead = info["dead_enemies"] == env.n_enemies
        assert info["battle_won"] == (enemies_all_dead and not allies_all_dead)
        if info["battle_won"]:
            wins += 1
            assert reward >= env.smax_env.won_battle_bonus  # the win bonus is in the last reward
        if not info.get("episode_limit"):
            assert allies_all_dead or enemies_all_dead
            assert len(trace) - 1 < env.episode_limit
    assert wins > 0, "focus fire never won 3m"
    stats = env.get_stats()
    assert stats["battles_game"] - games_before == n_episodes
    assert stats["battles_won"] - wins_before == wins
    assert stats["win_rate"] == pytest.approx(stats["battles_won"] / stats["battles_game"])


def test_time_limit_ends_the_episode(short_env: SMAXStarCraft2Env) -> None:
    trace = play(short_env, idle, seed=0)
    assert len(trace) - 1 == short_env.episode_limit  # exactly episode_limit steps, as in SMAC
    *_, terminated, info = trace[-1]
    assert terminated and info["episode_limit"] is True
    assert info["battle_won"] is False
    assert short_env.get_stats()["timeouts"] == 1


def test_reward_is_the_shared_team_reward(env: SMAXStarCraft2Env) -> None:
    import jax

    smax = env.smax_env

    @jax.jit
    def both(key: jax.Array, state: Any, smac_actions: jax.Array) -> tuple[Any, ...]:
        _, ours = smax_step(smax, key, state, smac_actions)
        smax_actions = smac_to_smax_actions(smac_actions)
        actions = {agent: smax_actions[i] for i, agent in enumerate(smax.agents)}
        _, _, rewards, _, _ = smax.step_env(key, state, actions)
        return ours.reward, [rewards[agent] for agent in smax.agents]

    env.reseed(7)
    env.reset()
    key = jax.random.PRNGKey(7)
    terminated, nonzero = False, 0
    while not terminated:
        actions = focus_fire(env)
        key, step_key = jax.random.split(key)
        ours, per_agent = jax.device_get(both(step_key, env.smax_state, np.asarray(actions)))
        assert np.all(np.asarray(per_agent) == per_agent[0])  # identical for every ally
        assert ours == per_agent[0]
        nonzero += per_agent[0] != 0
        _, terminated, _ = env.step(actions)
    assert nonzero > 0


def test_no_recompilation_across_episodes(env: SMAXStarCraft2Env) -> None:
    import jax

    for seed in range(3):
        play(env, random_actions, seed=200 + seed)
    # weak types from SMAX's reset would make the first step of every episode compile again
    assert not any(leaf.weak_type for leaf in jax.tree.leaves(env.smax_state))
    assert env._reset_jit._cache_size() == 1
    assert env._step_jit._cache_size() == 1


def test_pure_functions_vmap(env: SMAXStarCraft2Env) -> None:
    """smax_reset/smax_step batch with jax.vmap (the basis of a vectorised env)."""
    import jax
    import jax.numpy as jnp

    batch = 2

    @jax.jit
    def reset_and_stop(keys: jax.Array) -> tuple[Any, Any]:
        states, first = jax.vmap(partial(smax_reset, env.smax_env))(keys)
        stop = jnp.full((batch, env.n_agents), STOP, dtype=jnp.int32)
        _, second = jax.vmap(partial(smax_step, env.smax_env))(keys, states, stop)
        return first, second

    first, second = jax.device_get(reset_and_stop(jax.random.split(jax.random.PRNGKey(0), batch)))
    for out in (first, second):
        assert out.obs.shape == (batch, env.n_agents, env.get_obs_size())
        assert out.world_state.shape == (batch, env.get_state_size())
        assert out.avail.shape == (batch, env.n_agents, env.n_actions)
        assert out.reward.shape == out.terminated.shape == (batch,)
        assert np.all(out.avail[..., 0] == 0)  # everybody alive at the start
    assert not np.array_equal(first.obs[0], first.obs[1])  # separate keys, separate episodes


# -- imports and the compilation cache -------------------------------------------------------------


def test_missing_jaxmarl_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jaxmarl.environments", None)
    with pytest.raises(ImportError, match=r'pip install "bdps-agents\[smax\]"'):
        SMAXStarCraft2Env(MAP)


def test_lazy_import_and_cache_dir(tmp_path: Any) -> None:
    script = textwrap.dedent(
        f"""
        import sys, warnings
        import bdps_agents.adapters.smax as smax
        assert "jax" not in sys.modules, "importing the module imported jax"
        env = smax.SMAXStarCraft2Env("3m")
        import jax
        assert jax.config.jax_compilation_cache_dir == {str(tmp_path)!r}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert smax.enable_compilation_cache({str(tmp_path / "other")!r}) == {str(tmp_path)!r}
        assert any("already" in str(w.message) for w in caught)
        print("ok")
        """
    )
    # a user-level JAX_COMPILATION_CACHE_DIR would (rightly) win over ours
    clean_env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**clean_env, "OMP_NUM_THREADS": "1", "BDPS_JAX_CACHE_DIR": str(tmp_path)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"  # jaxmarl's import-time prints are silenced


def test_state_features_lie_in_unit_interval(env: SMAXStarCraft2Env) -> None:
    """Raw SMAX world states hold map coordinates (0..32), type indices and cooldowns that fall
    without bound; the state fed to the mixer is scaled to [0, 1] (see _scaled_world_state)."""
    rng = np.random.default_rng(0)
    states, longest = [], 0
    for seed in range(4):
        env.reseed(seed)
        env.reset()
        states.append(env.get_state())
        done, steps = False, 0
        while not done:
            _, done, _ = env.step(random_actions(env, rng))
            states.append(env.get_state())
            steps += 1
        longest = max(longest, steps)
    states = np.array(states)
    assert states.min() >= 0.0 and states.max() <= 1.0
    assert longest > 10 and states.std(axis=0).max() > 0.05  # moving, not constant
