"""Adapter registry and the Level-Based Foraging adapter, on the real lbforaging env."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

import bdps_agents.adapters as adapters
from bdps_agents.adapters import (
    BUILTIN_ADAPTERS,
    ENTRY_POINT_GROUP,
    AdapterLoadError,
    AdapterRegistry,
    UnknownAdapterError,
    available_adapters,
    make_env,
    register_adapter,
)
from bdps_agents.adapters.base import ActionMaskInObservation
from bdps_agents.adapters.lbf import LBFParallelEnv, parse_task

REPO_ROOT = Path(__file__).resolve().parents[2]

LOAD = 5


# ----------------------------------------------------------------------------- registry
@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> AdapterRegistry:
    registry = AdapterRegistry(dict(BUILTIN_ADAPTERS))
    monkeypatch.setattr(adapters, "_registry", registry)
    return registry


def _fake_entry_points(*eps: importlib.metadata.EntryPoint):
    def entry_points(**params: Any) -> importlib.metadata.EntryPoints:
        assert params == {"group": ENTRY_POINT_GROUP}
        return importlib.metadata.EntryPoints(eps)

    return entry_points


def test_builtin_lbf_is_available(fresh_registry: AdapterRegistry) -> None:
    assert "lbf" in available_adapters()
    env = make_env("lbf", task="8x8-2p-2f")
    assert isinstance(env, LBFParallelEnv)


def test_importing_registry_does_not_import_simulators() -> None:
    code = (
        "import sys, bdps_agents.adapters as a; "
        "assert 'lbf' in a.available_adapters(); "
        "heavy = [m for m in ('lbforaging', 'jax', 'jaxmarl', 'gfootball', 'smac', 'mpe2') "
        "if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *sys.path])}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, env=env, timeout=60)


def test_unknown_name_lists_known_adapters(fresh_registry: AdapterRegistry) -> None:
    register_adapter("other", LBFParallelEnv)
    with pytest.raises(UnknownAdapterError) as excinfo:
        make_env("no_such_env")
    assert isinstance(excinfo.value, KeyError) and isinstance(excinfo.value, ValueError)
    message = str(excinfo.value)
    assert "no_such_env" in message and "lbf" in message and "other" in message


def test_duplicate_registration(fresh_registry: AdapterRegistry) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_adapter("lbf", LBFParallelEnv)
    register_adapter("lbf", lambda **kw: LBFParallelEnv(players=3, **kw), overwrite=True)
    assert make_env("lbf").possible_agents == ["agent_0", "agent_1", "agent_2"]


@pytest.mark.parametrize("name", ["", None])
def test_bad_adapter_name(fresh_registry: AdapterRegistry, name: Any) -> None:
    with pytest.raises(ValueError):
        register_adapter(name, LBFParallelEnv)


def test_lazy_string_target(fresh_registry: AdapterRegistry) -> None:
    register_adapter("lbf_lazy", "bdps_agents.adapters.lbf.env:LBFParallelEnv.from_id")
    register_adapter("broken", "bdps_agents_no_such_module:factory")  # not imported yet
    env = make_env("lbf_lazy", env_id="Foraging-8x8-3p-1f-v3")
    assert len(env.possible_agents) == 3
    with pytest.raises(AdapterLoadError, match="broken"):
        make_env("broken")


def test_factory_must_return_parallel_env(fresh_registry: AdapterRegistry) -> None:
    register_adapter("not_an_env", lambda: object())
    with pytest.raises(TypeError, match="not_an_env"):
        make_env("not_an_env")


def _install_entry_point(monkeypatch: pytest.MonkeyPatch, name: str, target: str) -> None:
    """Make importlib.metadata report one entry point in the adapters group."""
    ep = importlib.metadata.EntryPoint(name, target, ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", _fake_entry_points(ep))


def test_entry_point_is_discovered(
    fresh_registry: AdapterRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_entry_point(monkeypatch, "spread", "mpe2.simple_spread_v3:parallel_env")
    assert available_adapters() == sorted([*BUILTIN_ADAPTERS, "spread"])
    env = make_env("spread", N=2, continuous_actions=False)
    assert env.possible_agents == ["agent_0", "agent_1"]


def test_broken_entry_point_is_named(
    fresh_registry: AdapterRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_entry_point(monkeypatch, "broken_ep", "bdps_no_such_pkg.adapter:make")
    assert "broken_ep" in available_adapters()  # listing does not import it
    with pytest.raises(AdapterLoadError, match="broken_ep.*bdps_no_such_pkg"):
        make_env("broken_ep")


def test_entry_point_does_not_shadow_builtin(
    fresh_registry: AdapterRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_entry_point(monkeypatch, "lbf", "mpe2.simple_spread_v3:parallel_env")
    with pytest.warns(UserWarning, match="already registered"):
        names = available_adapters()
    assert names == sorted(BUILTIN_ADAPTERS)
    assert isinstance(make_env("lbf"), LBFParallelEnv)


# ----------------------------------------------------------------------------- LBF
LBF_CONFIGS = [
    pytest.param({"task": "8x8-2p-2f-coop"}, id="8x8-2p-2f-coop"),
    pytest.param({"task": "15x15-4p-5f"}, id="15x15-4p-5f"),
    pytest.param({"task": "10x10-3p-3f-2s"}, id="10x10-3p-3f-2s"),
    pytest.param({"field_size": 8, "players": 2, "max_num_food": 2, "sight": 2}, id="sight2"),
    pytest.param({"field_size": (5, 9), "players": 3, "max_num_food": 2}, id="non-square"),
]


def _policy_actions(
    rng: np.random.Generator, infos: dict[str, dict[str, Any]], agents: list[str]
) -> dict[str, int]:
    """LOAD when possible (so that food does get collected), else a random available action."""
    actions = {}
    for agent in agents:
        mask = infos[agent]["action_mask"]
        actions[agent] = LOAD if mask[LOAD] else int(rng.choice(np.flatnonzero(mask)))
    return actions


def _rollout(env: LBFParallelEnv, seed: int, action_seed: int = 0) -> list[Any]:
    rng = np.random.default_rng(action_seed)
    obs, infos = env.reset(seed=seed)
    trace: list[Any] = [obs, infos, env.state()]
    while env.agents:
        step = env.step(_policy_actions(rng, infos, env.agents))
        obs, infos = step[0], step[4]
        trace.extend([*step, env.state()])
    return trace


def test_action_mask_in_observation() -> None:
    env = ActionMaskInObservation(LBFParallelEnv(task="8x8-2p-2f"))
    obs, infos = env.reset(seed=0)
    assert env.observation_space("agent_0").contains(obs["agent_0"])
    np.testing.assert_array_equal(obs["agent_0"]["action_mask"], infos["agent_0"]["action_mask"])
    parallel_api_test(env, num_cycles=50)  # it samples from the masks in the observations


@pytest.mark.parametrize("config", LBF_CONFIGS)
def test_lbf_seed_determines_episode(same_nested, config: dict[str, Any]) -> None:
    env_a, env_b = LBFParallelEnv(**config), LBFParallelEnv(**config)
    for seed in (3, 11):
        reference = _rollout(env_a, seed)
        _rollout(env_b, seed + 1000, action_seed=5)  # a different history first
        assert same_nested(reference, _rollout(env_b, seed))
        assert same_nested(reference, _rollout(env_a, seed))
    first_obs = [_rollout(env_a, s)[0]["agent_0"] for s in range(5)]
    assert any(not np.array_equal(first_obs[0], o) for o in first_obs[1:])


def test_lbf_reset_does_not_depend_on_history(same_nested) -> None:
    # lbforaging 2.0.0 itself fails this for about a quarter of the seeds (see LBFParallelEnv.reset)
    env = LBFParallelEnv(players=4, max_num_food=3)
    rng = np.random.default_rng(0)
    for seed in range(40):
        first, infos = env.reset(seed=seed)
        for _ in range(30):
            if env.agents:
                actions = {
                    a: int(rng.choice(np.flatnonzero(infos[a]["action_mask"]))) for a in env.agents
                }
                _, _, _, _, infos = env.step(actions)
        again, _ = env.reset(seed=seed)
        assert same_nested(first, again)


@pytest.mark.parametrize("config", LBF_CONFIGS)
def test_lbf_masks_match_valid_actions(config: dict[str, Any]) -> None:
    env = LBFParallelEnv(**config)
    lbf = env.foraging_env
    rng = np.random.default_rng(1)
    _, infos = env.reset(seed=2)
    while env.agents:
        joint_valid = lbf.get_valid_actions()  # product of the per-player valid action lists
        for i, agent in enumerate(env.agents):
            expected = np.zeros(6, dtype=np.int8)
            expected[sorted({combo[i].value for combo in joint_valid})] = 1
            np.testing.assert_array_equal(infos[agent]["action_mask"], expected)
            assert expected[0] == 1  # NONE is always valid
        *_, infos = env.step(_policy_actions(rng, infos, env.agents))


def test_lbf_unavailable_action_is_replaced_on_both_paths() -> None:
    # step and step_arrays run NONE instead and report it (test_unavailable_actions.py checks
    # the effect against stepping with NONE, for every adapter)
    by_dict, by_array = LBFParallelEnv(task="8x8-2p-2f"), LBFParallelEnv(task="8x8-2p-2f")
    _, infos = by_dict.reset(seed=4)
    by_array.reset(seed=4)
    unavailable = int(np.flatnonzero(infos["agent_0"]["action_mask"] == 0)[0])
    obs, *_, infos = by_dict.step({"agent_0": unavailable, "agent_1": 0})
    out = by_array.step_arrays([unavailable, 0])
    assert [infos[a]["action_replaced"] for a in by_dict.possible_agents] == [True, False]
    assert out.replaced.dtype == bool and out.replaced.tolist() == [True, False]
    np.testing.assert_array_equal(out.obs, np.stack(list(obs.values())))
    *_, infos = by_dict.step({"agent_0": 0, "agent_1": 0})
    assert not any(info["action_replaced"] for info in infos.values())  # one step only


def _set_layout(
    env: LBFParallelEnv,
    foods: dict[tuple[int, int], int],
    players: list[tuple[tuple[int, int], int]],
) -> None:
    """Place foods and players by hand (test-only use of lbforaging internals)."""
    lbf = env.foraging_env
    lbf.field[:] = 0
    for (row, col), level in foods.items():
        lbf.field[row, col] = level
    lbf._food_spawned = lbf.field.sum()
    for player, (position, level) in zip(lbf.players, players, strict=True):
        player.position, player.level = position, level
    lbf._gen_valid_moves()


def test_lbf_state_has_information_beyond_partial_obs() -> None:
    env = LBFParallelEnv(field_size=8, players=2, max_num_food=1, sight=1, normalize_obs=False)
    env.reset(seed=0)
    snapshots = []
    for food, other in [((2, 5), (0, 0)), ((4, 4), (0, 0)), ((2, 5), (0, 3))]:
        _set_layout(env, {food: 2}, [((7, 0), 1), (other, 1)])
        snapshots.append((env.foraging_env._make_gym_obs()[0], env.state()))
    (obs0, s0), (obs1, s1), (obs2, s2) = snapshots
    # agent_0 at the corner sees nothing of the far food or of the other agent ...
    np.testing.assert_array_equal(obs0, obs1)
    np.testing.assert_array_equal(obs0, obs2)
    # ... but the state does, in absolute coordinates
    assert not np.array_equal(s0, s1) and not np.array_equal(s0, s2)
    np.testing.assert_array_equal(s0, [2, 5, 2, 7, 0, 1, 0, 0, 1, 0])


@pytest.mark.parametrize("task", ["8x8-2p-2f-coop", "15x15-4p-5f", "10x10-3p-3f-2s"])
def test_lbf_normalized_obs_and_state_are_affine_images_of_the_raw_ones(task: str) -> None:
    raw = LBFParallelEnv(task=task, normalize_obs=False)
    norm = LBFParallelEnv(task=task)
    obs_r, _ = raw.reset(seed=3)
    obs_n, infos = norm.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(30):
        for a in raw.possible_agents:
            assert norm.observation_space(a).contains(obs_n[a])
            low, high = raw.observation_space(a).low, raw.observation_space(a).high
            span = np.where(high > low, high - low, 1.0)
            np.testing.assert_allclose(obs_n[a], (obs_r[a] - low) / span, rtol=1e-6, atol=1e-6)
        s_r, s_n = raw.state(), norm.state()
        assert norm.state_space.contains(s_n)
        span = np.where(
            raw.state_space.high > raw.state_space.low,
            raw.state_space.high - raw.state_space.low,
            1.0,
        )
        np.testing.assert_allclose(s_n, (s_r - raw.state_space.low) / span, rtol=1e-6, atol=1e-6)
        actions = {a: int(rng.choice(np.flatnonzero(infos[a]["action_mask"]))) for a in raw.agents}
        obs_r, *_, _done_r, _ = raw.step(actions)
        obs_n, _, _, _, infos = norm.step(actions)
        if not raw.agents:
            break


def test_lbf_state_does_not_depend_on_sight(same_nested) -> None:
    partial, full = LBFParallelEnv(task="8x8-3p-2f-1s"), LBFParallelEnv(task="8x8-3p-2f")
    trace_p, trace_f = _rollout(partial, seed=6), _rollout(full, seed=6)
    states_p = [x for x in trace_p if isinstance(x, np.ndarray)]
    states_f = [x for x in trace_f if isinstance(x, np.ndarray)]
    assert same_nested(states_p, states_f)
    assert not np.array_equal(trace_p[0]["agent_0"], trace_f[0]["agent_0"])


def test_lbf_truncation_at_time_limit() -> None:
    env = LBFParallelEnv(task="8x8-2p-2f", max_episode_steps=4)
    env.reset(seed=0)
    for t in range(4):
        _, _rewards, terms, truncs, _infos = env.step(dict.fromkeys(env.agents, 0))
        assert not any(terms.values())
        assert all(truncs.values()) == (t == 3)
    assert env.agents == [] and set(truncs) == {"agent_0", "agent_1"}
    assert env.state()[-1] == 1.0
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})


@pytest.mark.parametrize("limit", [1, 50])
def test_lbf_termination_when_all_food_collected(limit: int) -> None:
    env = LBFParallelEnv(field_size=6, players=2, max_num_food=1, max_episode_steps=limit)
    env.reset(seed=0)
    _set_layout(env, {(3, 3): 2}, [((3, 2), 1), ((3, 4), 1)])
    _, rewards, terms, truncs, infos = env.step({"agent_0": LOAD, "agent_1": LOAD})
    assert terms == {"agent_0": True, "agent_1": True}
    assert truncs == {"agent_0": False, "agent_1": False}  # even when the time is up too
    assert rewards == {"agent_0": 0.5, "agent_1": 0.5}
    assert infos["agent_0"]["food_collected"] == 1.0 and env.agents == []


def test_lbf_food_collected_metric_tracks_normalised_return() -> None:
    env = LBFParallelEnv(task="8x8-2p-2f")
    rng = np.random.default_rng(0)
    collected_any = False
    for seed in range(8):
        _, infos = env.reset(seed=seed)
        assert infos["agent_0"]["food_collected"] == 0.0
        ret = 0.0
        while env.agents:
            _, rewards, _, _, infos = env.step(_policy_actions(rng, infos, env.agents))
            ret += sum(rewards.values())
            assert infos["agent_0"]["food_collected"] == pytest.approx(ret)
        collected_any |= ret > 0
    assert collected_any


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("8x8-2p-2f-coop", {"field_size": (8, 8), "players": 2, "coop": True, "sight": None}),
        ("15x15-4p-5f", {"field_size": (15, 15), "players": 4, "max_num_food": 5}),
        ("5x7-3p-1f-2s-pen", {"field_size": (5, 7), "sight": 2, "penalty": 0.1}),
        ("Foraging-8x8-2p-2f-coop-v3", {"field_size": (8, 8), "coop": True, "sight": None}),
        ("Foraging-2s-12x12-2p-3f-v3", {"field_size": (12, 12), "sight": 2, "coop": False}),
    ],
)
def test_parse_task(task: str, expected: dict[str, Any]) -> None:
    parsed = parse_task(task)
    assert {k: parsed[k] for k in expected} == expected


def test_task_builds_expected_env() -> None:
    env = make_env("lbf", task="15x15-4p-5f")
    assert env.observation_space("agent_3").shape == (27,)
    assert env.state_space.shape == (28,)
    assert env.field_size == (15, 15) and env.sight == 15 and env.episode_limit == 50
    by_id = LBFParallelEnv.from_id("Foraging-2s-8x8-2p-2f-coop-v3", max_episode_steps=25)
    assert (by_id.sight, by_id.coop, by_id.episode_limit) == (2, True, 25)
    # a task argument that repeats the task's own value is not a conflict
    assert LBFParallelEnv(task="8x8-3p-2f", players=3, field_size=8).n_players == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"players": 0}, "players"),
        ({"max_num_food": 0}, "max_num_food"),
        ({"field_size": 2}, "field_size"),
        ({"field_size": (8,)}, "field_size"),
        ({"field_size": 4, "max_num_food": 5}, "do not fit"),
        ({"field_size": 3, "players": 9, "max_num_food": 1}, "do not fit"),
        ({"sight": 0}, "sight"),
        ({"max_episode_steps": 0}, "max_episode_steps"),
        ({"min_player_level": 3}, "min_player_level"),
        ({"max_player_level": [1, 2, 3]}, "max_player_level"),
        ({"min_food_level": 0}, "min_food_level"),
        ({"min_food_level": 3, "max_food_level": 2}, "min_food_level"),
        ({"penalty": -1.0}, "penalty"),
        ({"render_mode": "ansi"}, "render_mode"),
        ({"task": "8x8-2p"}, "cannot parse"),
        ({"task": "Foraging-grid-8x8-2p-2f-v3"}, "cannot parse"),
        ({"task": "8x8-2p-2f", "players": 3}, "conflicts"),
    ],
)
def test_lbf_bad_constructor_args(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LBFParallelEnv(**kwargs)


@pytest.mark.parametrize(
    ("actions", "match"),
    [
        ({"agent_0": 6, "agent_1": 0}, "agent_0"),
        ({"agent_0": 0, "agent_1": -1}, "agent_1"),
        ({"agent_0": 1.0, "agent_1": 0}, "agent_0"),
        ({"agent_0": True, "agent_1": 0}, "agent_0"),
        ({"agent_0": np.array([1]), "agent_1": 0}, "agent_0"),
        ({"agent_0": 0, "agent_1": 0, "agent_7": 0}, "agent_7"),
        ({"agent_0": 0}, "agent_1"),
    ],
)
def test_lbf_bad_actions(actions: dict[str, Any], match: str) -> None:
    env = LBFParallelEnv(task="8x8-2p-2f")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(actions)
    env.step({"agent_0": np.int64(0), "agent_1": np.array(0)})  # NumPy integers are fine


@pytest.mark.parametrize("config", LBF_CONFIGS)
def test_lbf_step_arrays_equals_step(config: dict[str, Any]) -> None:
    by_dict, by_array = LBFParallelEnv(**config), LBFParallelEnv(**config)
    rng = np.random.default_rng(0)
    for seed in range(3):
        obs, infos = by_dict.reset(seed=seed)
        by_array.reset(seed=seed)
        while by_dict.agents:
            actions = _policy_actions(rng, infos, by_dict.agents)
            obs, rewards, terms, truncs, infos = by_dict.step(actions)
            out = by_array.step_arrays(np.array(list(actions.values())))
            agents = by_dict.possible_agents
            np.testing.assert_array_equal(out.obs, np.stack([obs[a] for a in agents]))
            assert out.obs.dtype == np.float32 and out.masks.dtype == np.int8
            assert out.rewards.tolist() == [rewards[a] for a in agents]
            assert out.terminated.tolist() == [terms[a] for a in agents]
            assert out.truncated.tolist() == [truncs[a] for a in agents]
            np.testing.assert_array_equal(
                out.masks, np.stack([infos[a]["action_mask"] for a in agents])
            )
            assert out.metrics == {"food_collected": infos["agent_0"]["food_collected"]}
            assert out.replaced.tolist() == [infos[a]["action_replaced"] for a in agents]
            assert by_array.agents == by_dict.agents
            np.testing.assert_array_equal(by_array.state(), by_dict.state())
    with pytest.raises(RuntimeError, match="reset"):
        by_array.step_arrays([0] * len(by_array.possible_agents))


@pytest.mark.parametrize(
    ("actions", "match"),
    [
        ([0, 0, 0], "shape"),
        ([[0, 0]], "shape"),
        ([0.0, 0.0], "integers"),
        ([True, False], "integers"),
        ([6, 0], "agent_0"),
        ([0, -1], "agent_1"),
    ],
)
def test_lbf_step_arrays_bad_actions(actions: list[Any], match: str) -> None:
    env = LBFParallelEnv(task="8x8-2p-2f")
    env.reset(seed=4)
    with pytest.raises(ValueError, match=match):
        env.step_arrays(actions)
    env.step_arrays(np.zeros(2, dtype=np.int8))  # nothing was consumed by the failed calls
    assert env.foraging_env.current_step == 1


def test_lbf_spaces_and_agents() -> None:
    env = LBFParallelEnv(task="8x8-2p-2f")
    assert env.possible_agents == ["agent_0", "agent_1"] and env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.state()
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"agent_0": 0, "agent_1": 0})
    with pytest.raises(ValueError, match="agent_5"):
        env.action_space("agent_5")
    assert env.action_space("agent_0").n == 6 and env.noop_action == 0
    assert env.observation_space("agent_0").dtype == np.float32
    obs, infos = env.reset(seed=0)
    assert obs["agent_0"].dtype == np.float32
    assert infos["agent_0"]["action_mask"].dtype == np.int8


def test_lbf_warns_when_not_all_food_fits() -> None:
    # Fields where placement can fail are refused up front (test_config_validation.py); the
    # warning stays for lbforaging giving up after 1000 random draws, simulated here.
    env = LBFParallelEnv(field_size=8, players=2, max_num_food=2)
    spawn_food = env.foraging_env.spawn_food
    env.foraging_env.spawn_food = lambda n, **levels: spawn_food(n - 1, **levels)
    with pytest.warns(RuntimeWarning, match="placed only 1 of 2 foods"):
        env.reset(seed=0)


def test_a_huge_lbf_field_is_refused_at_once_without_memory():
    """Issue 33: ``--set env.kwargs.task=99999x99999-2p-2f`` grew to 13 GB while the config was
    checked; under a 2 GB address-space limit it is refused in a second, naming the size."""
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from bdps_agents.adapters import check_adapter_kwargs\n"
        "try:\n"
        "    check_adapter_kwargs('lbf', {'task': '99999x99999-2p-2f'})\n"
        "except ValueError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "a 99999x99999 field has 9999800001 cells, more than the 1000000" in done.stdout
    assert "use a smaller field" in done.stdout
