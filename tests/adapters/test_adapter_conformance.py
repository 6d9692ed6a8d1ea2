"""One suite for every registered adapter (``available_adapters()``): PettingZoo's parallel API,
the conventions of :mod:`bdps_agents.adapters.base` and ``JointEnv`` around the adapter.

Each built-in adapter has rows in :data:`ROWS` (how to build it, and what to expect); a new
built-in adapter without rows fails ``test_every_builtin_adapter_has_rows``. Rows are skipped
when their simulator is not installed (jaxmarl, gfootball; StarCraft II for live SMAC, whose
contract is checked on the stand-in of ``smac_standin.py``). Adapter-specific behaviour stays in
the adapter's own test module.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
from pettingzoo import ParallelEnv
from pettingzoo.test import parallel_api_test

from bdps_agents.adapters import BUILTIN_ADAPTERS, available_adapters, make_env
from bdps_agents.adapters.base import ACTION_REPLACED, FrameDrawer, check_adapter_conventions
from bdps_agents.adapters.smac import SMACParallelEnv
from bdps_agents.joint_env import JointEnv
from tests.adapters.smac_standin import ReseedableStandIn


@dataclass(frozen=True)
class Row:
    make: Callable[[], ParallelEnv]
    num_cycles: int = 100  # for parallel_api_test (per episode; episodes usually end sooner)
    replaces: bool = True  # whether uniform sampling hits unavailable actions (masks exist)
    seeds: tuple[int, ...] = (0, 1)  # episodes of check_adapter_conventions
    slack: int = 0  # steps an episode may last beyond episode_limit (SMAC's count: +1)
    drawn: bool = True  # whether it names a frame drawer (bdps render)


def _registered(name: str, **kwargs: Any) -> Callable[[], ParallelEnv]:
    return lambda: make_env(name, **kwargs)


def _live_smac_reason() -> str | None:
    try:
        import smac.env  # noqa: F401
    except ImportError:
        return "oxwhirl/smac is not installed (pip install git+https://github.com/oxwhirl/smac.git)"
    sc2 = Path(os.environ.get("SC2PATH", "~/StarCraftII")).expanduser()
    if not sc2.is_dir():
        return f"StarCraft II is not installed (SC2PATH={sc2} does not exist)"
    return None


LBF_CONFIGS: dict[str, dict[str, Any]] = {
    "8x8-2p-2f-coop": {"task": "8x8-2p-2f-coop"},
    "15x15-4p-5f": {"task": "15x15-4p-5f"},
    "10x10-3p-3f-2s": {"task": "10x10-3p-3f-2s"},
    "sight2": {"field_size": 8, "players": 2, "max_num_food": 2, "sight": 2},
    "non-square": {"field_size": (5, 9), "players": 3, "max_num_food": 2},
}
_LIVE_SMAC = _live_smac_reason()

#: adapter name -> its rows (pytest params of :class:`Row`)
ROWS: dict[str, list[Any]] = {
    "lbf": [
        pytest.param(Row(_registered("lbf", **kwargs), seeds=(0, 1, 2)), id=f"lbf-{name}")
        for name, kwargs in LBF_CONFIGS.items()
    ],
    "smax": [
        pytest.param(
            Row(_registered("smax", map_name="3m", seed=0), seeds=(3,), slack=1),
            id="smax-3m",
            marks=[pytest.mark.requires(module="jaxmarl", extra="smax"), pytest.mark.starts_jax],
        )
    ],
    "grf": [
        pytest.param(
            Row(_registered("grf", env_name="academy_3_vs_1_with_keeper"), replaces=False),
            id="grf-academy_3_vs_1_with_keeper",
            marks=pytest.mark.requires(module="gfootball", extra="grf"),
        )
    ],
    "smac": [
        pytest.param(
            Row(
                _registered("smac", map_name="3m", seed=0),
                num_cycles=50,
                seeds=(0,),
                slack=1,
                drawn=False,
            ),
            id="smac-3m",
            marks=[pytest.mark.skip(reason=_LIVE_SMAC)] if _LIVE_SMAC else [],
        ),
        pytest.param(  # the adapter itself, over the contract of StarCraft2Env (reseedable)
            Row(lambda: SMACParallelEnv(ReseedableStandIn(seed=0)), num_cycles=30, drawn=False),
            id="smac-standin",
        ),
    ],
}

PARAMS = [
    param
    for name in available_adapters()
    for param in ROWS.get(
        name,
        [pytest.param(None, id=name, marks=pytest.mark.skip(reason="no rows: not built in"))],
    )
]


def test_every_builtin_adapter_has_rows() -> None:
    assert set(BUILTIN_ADAPTERS) <= set(ROWS)
    assert set(BUILTIN_ADAPTERS) <= set(available_adapters())


@pytest.fixture(scope="module", params=PARAMS)
def row(request: pytest.FixtureRequest) -> Row:
    return request.param


@pytest.fixture(scope="module")
def env(row: Row) -> Iterator[ParallelEnv]:
    env = row.make()
    yield env
    env.close()


def _recording(env: ParallelEnv) -> tuple[list[tuple[list[str], dict[str, Any]]], Callable]:
    """Record (agents that acted, infos) of every reset and step of ``env`` (instance attributes
    shadow the methods, so ``env`` is not wrapped: parallel_api_test refuses wrappers); the
    second value undoes it."""
    seen: list[tuple[list[str], dict[str, Any]]] = []
    reset, step = env.reset, env.step

    def recording_reset(*args: Any, **kwargs: Any) -> Any:
        obs, infos = reset(*args, **kwargs)
        seen.append((list(env.agents), infos))
        return obs, infos

    def recording_step(actions: dict[str, Any]) -> Any:
        out = step(actions)
        seen.append((list(actions), out[4]))
        return out

    env.reset, env.step = recording_reset, recording_step  # type: ignore[method-assign]

    def undo() -> None:
        del env.reset, env.step

    return seen, undo


def test_parallel_api_test_passes_unwrapped(env: ParallelEnv, row: Row) -> None:
    for agent in env.possible_agents:  # the test samples from these: make it repeatable
        env.action_space(agent).seed(3)
    seen, undo = _recording(env)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parallel_api_test(env, num_cycles=row.num_cycles)
    finally:
        undo()
    assert not [w for w in caught if issubclass(w.category, UserWarning)]
    flags = []
    for agents, infos in seen:  # the key is in every agent's info, at reset and every step
        assert agents and all(type(infos[a][ACTION_REPLACED]) is bool for a in agents)
        flags.extend(infos[a][ACTION_REPLACED] for a in agents)
    # parallel_api_test samples uniformly: with masks, some of its actions were unavailable
    assert any(flags) == row.replaces


def test_conventions(env: ParallelEnv, row: Row) -> None:
    limit = getattr(env, "episode_limit", None)
    if limit is not None:
        assert isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1
    assert env.state_space.dtype == np.float32
    max_steps = 200 if limit is None else limit + row.slack
    for seed in row.seeds:  # (check_adapter_conventions checks that the episode ends in time)
        check_adapter_conventions(env, seed=seed, max_steps=max_steps)


def test_metric_keys_and_names(env: ParallelEnv) -> None:
    keys = tuple(getattr(env, "metric_keys", ()))
    assert all(isinstance(k, str) and k for k in keys) and len(set(keys)) == len(keys)
    assert "n_alive" not in keys  # JointEnv's own
    names = getattr(env, "metric_names", {})
    assert isinstance(names, Mapping)
    assert set(names) <= set(keys), f"metric_names {dict(names)} name keys not in {keys}"
    shown = [names.get(k, k) for k in keys]
    assert all(isinstance(n, str) and n for n in shown) and len(set(shown)) == len(shown)


def test_frame_drawer(env: ParallelEnv, row: Row) -> None:
    from bdps_agents.render import frame_drawer

    target = getattr(env, "frame_drawer", None)
    assert (target is not None) == row.drawn
    if target is not None:
        assert isinstance(target, str) and target.count(":") == 1
        drawer = frame_drawer(env)
        assert isinstance(drawer, FrameDrawer) and frame_drawer(JointEnv(env)) is drawer


def test_joint_env_wraps_it(env: ParallelEnv, row: Row) -> None:
    joint = JointEnv(env)
    assert joint.n_agents == len(env.possible_agents)
    assert joint.episode_limit == getattr(env, "episode_limit", None)
    assert joint.metric_keys == tuple(getattr(env, "metric_keys", ()))
    assert joint.metric_names == dict(getattr(env, "metric_names", {}))
    assert joint.noop_action == env.noop_action
    assert isinstance(joint.observation_space, gymnasium.spaces.Dict)
    keys = {"n_alive", *joint.metric_keys}
    rng = np.random.default_rng(0)
    obs, info = joint.reset(seed=0)
    assert set(info) == keys and info["n_alive"] == joint.n_agents
    done, steps = False, 0
    while not done:
        assert joint.observation_space.contains(obs)
        action = np.array([rng.choice(np.flatnonzero(m)) for m in obs["mask"]])
        obs, reward, terminated, truncated, info = joint.step(action)
        assert isinstance(reward, float) and set(info) == keys
        hidden = obs["alive"] == 0
        assert not obs["obs"][hidden].any()
        assert (obs["mask"][hidden].sum(axis=1) == 1).all()
        assert (obs["mask"][hidden, joint.noop_action] == 1).all()
        done = terminated or truncated
        steps += 1
        assert steps <= (joint.episode_limit or 200) + row.slack
    assert not (terminated and truncated) and info["n_alive"] == 0
