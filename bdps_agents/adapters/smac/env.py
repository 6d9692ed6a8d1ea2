"""SMAC as a PettingZoo parallel env, over anything with the ``StarCraft2Env`` API.

:class:`SMACParallelEnv` wraps an object with the surface of oxwhirl/smac's ``StarCraft2Env``
(also smacv2's, and :class:`bdps_agents.adapters.smax.SMAXStarCraft2Env`, which runs SMAX maps in
JAX with no StarCraft binary). It relies only on this contract:

* ``get_env_info()`` -> ``n_agents``, ``n_actions``, ``obs_shape``, ``state_shape``,
  ``episode_limit``; the constructor starts no game;
* ``reset()`` -> ``(obs_list, state)`` (smacv2 takes an optional episode config; we pass none);
* ``step(actions: list[int])`` -> ``(reward: float, terminated: bool, info: dict)``. ``info``
  normally holds ``battle_won``, ``dead_allies``, ``dead_enemies``, and ``episode_limit`` only
  with ``continuing_episode=True``; a failed game connection returns ``(0, True, {})``, so info
  is read with ``.get``;
* ``get_obs()``, ``get_state()``, ``get_avail_actions()`` (per-agent 0/1 lists), ``close()``.

Semantics of the adapter (see also :mod:`bdps_agents.adapters.base`):

* agents ``"agent_0" .. "agent_{n-1}"`` in SMAC's order; actions in SMAC's numbering
  (0 no-op, 1 stop, 2-5 move N/S/E/W, 6+j attack enemy j or heal ally j); ``noop_action = 0``;
* masks from ``get_avail_actions()``; an agent whose only available action is the no-op is dead:
  it is *terminated* on the step it dies (its zero observation is returned once) and leaves
  ``agents``. An action that the mask forbids is replaced before it reaches the game (real SMAC
  would assert) and reported in ``infos[agent]["action_replaced"]``: live agents cannot no-op, so
  the replacement is the lowest available action, 1 = stop
  (:func:`~bdps_agents.adapters.base.replacement_action`);
* the team reward is given to every agent that acted; aggregate with ``mean`` in ``JointEnv``;
* the adapter counts steps itself: an episode that ends at ``episode_limit`` without a win and
  with allies alive is a *truncation* (bootstrapped), every other end a *termination*. A game
  that fails mid-episode (empty info) also ends as a truncation, with a warning;
* ``metric_keys = ("battle_won", "dead_allies", "dead_enemies")``, written into every agent's
  info at every step (0 at reset); the mean of the final ``battle_won`` over test episodes is
  the win rate that the trainer logs;
* ``reset(seed=s)`` re-seeds the underlying env if it has a ``reseed(seed)`` method (SMAX does).
  StarCraft II itself can only be seeded when it is constructed (``make_smac_env(seed=...)``), so
  for real SMAC a reset seed is ignored with a one-time warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

import gymnasium
import numpy as np

from bdps_agents.adapters.base import (
    ACTION_REPLACED,
    MultiAgentEnvAdapter,
    StepResult,
    replacement_action,
)

__all__ = ["SMACParallelEnv", "StarCraft2EnvLike", "make_smac_env"]

METRIC_KEYS = ("battle_won", "dead_allies", "dead_enemies")
#: Display names of metric keys: the fraction of battles won is SMAC's win rate.
METRIC_NAMES: Mapping[str, str] = MappingProxyType({"battle_won": "win_rate"})

SMAC_INSTALL = (
    "real SMAC needs oxwhirl/smac (or smacv2) from its git repository plus the StarCraft II game: "
    'pip install "bdps-agents[smac]" git+https://github.com/oxwhirl/smac.git, then install '
    "StarCraft II (Linux build 4.10) with the SMAC maps and set SC2PATH. The PyPI package named "
    "'smac' is SMAC3, a hyperparameter optimiser, not StarCraft. Without StarCraft II, the "
    "'smax' adapter runs SMAC-like maps in JAX."
)


class StarCraft2EnvLike(Protocol):
    """The part of ``smac.env.StarCraft2Env`` that :class:`SMACParallelEnv` uses."""

    def get_env_info(self) -> dict[str, Any]: ...
    def reset(self) -> Any: ...
    def step(self, actions: list[int]) -> tuple[float, bool, dict[str, Any]]: ...
    def get_obs(self) -> list[np.ndarray]: ...
    def get_state(self) -> np.ndarray: ...
    def get_avail_actions(self) -> list[list[int]]: ...
    def close(self) -> None: ...


def _positive_int(info: dict[str, Any], key: str) -> int:
    value = info.get(key)
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"get_env_info()[{key!r}] must be a positive integer, got {value!r}")
    return int(value)


def _size(info: dict[str, Any], key: str) -> int:
    value = info.get(key)
    size = int(np.prod(value)) if isinstance(value, tuple | list) else value
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"get_env_info()[{key!r}] must be a positive size, got {value!r}")
    return int(size)


class SMACParallelEnv(MultiAgentEnvAdapter):
    """PettingZoo parallel env over a ``StarCraft2Env``-like object (see the module docstring).

    Args:
        env: the wrapped environment; it is owned (closed) by the adapter.
        episode_limit: overrides ``get_env_info()["episode_limit"]`` for the truncation rule.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "smac_v0",
        "render_modes": [],
        "is_parallelizable": True,
    }
    noop_action = 0
    metric_keys: tuple[str, ...] = METRIC_KEYS
    metric_names: Mapping[str, str] = METRIC_NAMES

    def __init__(self, env: StarCraft2EnvLike, *, episode_limit: int | None = None) -> None:
        missing = [
            name
            for name in (
                "get_env_info",
                "reset",
                "step",
                "get_obs",
                "get_state",
                "get_avail_actions",
                "close",
            )
            if not callable(getattr(env, name, None))
        ]
        if missing:
            raise TypeError(
                f"{type(env).__name__} lacks the StarCraft2Env method(s) {missing}: "
                "SMACParallelEnv wraps objects with the StarCraft2Env API"
            )
        self.env = env
        # the wrapped env may name its drawer (SMAXStarCraft2Env does; StarCraft II's has none)
        self.frame_drawer: str | None = getattr(env, "frame_drawer", None)
        info = env.get_env_info()
        self.n_agents = _positive_int(info, "n_agents")
        self.n_actions = _positive_int(info, "n_actions")
        if self.n_actions < 2:
            raise ValueError(f"SMAC needs at least the no-op and one action, got {self.n_actions}")
        self.obs_dim = _size(info, "obs_shape")
        self.state_dim = _size(info, "state_shape")
        limit = info.get("episode_limit") if episode_limit is None else episode_limit
        self.episode_limit = None if limit is None else _positive_int({"limit": limit}, "limit")

        self.possible_agents = [f"agent_{i}" for i in range(self.n_agents)]
        self.agents = []
        self._index = {agent: i for i, agent in enumerate(self.possible_agents)}
        obs_space = gymnasium.spaces.Box(-np.inf, np.inf, (self.obs_dim,), dtype=np.float32)
        act_space: gymnasium.spaces.Discrete = gymnasium.spaces.Discrete(self.n_actions)
        self.observation_spaces = dict.fromkeys(self.possible_agents, obs_space)
        self.action_spaces = dict.fromkeys(self.possible_agents, act_space)
        self.state_space = gymnasium.spaces.Box(
            -np.inf, np.inf, (self.state_dim,), dtype=np.float32
        )
        self._state = np.zeros(self.state_dim, dtype=np.float32)
        self._masks = np.zeros((self.n_agents, self.n_actions), dtype=np.int8)
        self._steps = 0
        self._warned_seed = False

    # -- PettingZoo API ---------------------------------------------------------------------
    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None:
            reseed = getattr(self.env, "reseed", None)
            if callable(reseed):
                reseed(int(seed))
            elif not self._warned_seed:
                self._warned_seed = True
                warnings.warn(
                    f"{type(self.env).__name__} can only be seeded when it is constructed "
                    "(StarCraft II has no reset seed); reset(seed=...) is ignored",
                    stacklevel=2,
                )
        self.env.reset()
        self._steps = 0
        self.agents = list(self.possible_agents)
        obs = self._read()
        metrics = dict.fromkeys(METRIC_KEYS, 0.0)
        return obs, self._infos(self.agents, metrics, dict.fromkeys(self.agents, False))

    def step(self, actions: dict[str, Any]) -> StepResult:
        chosen = self._validate_actions(actions)
        joint = [self.noop_action] * self.n_agents
        replaced = dict.fromkeys(chosen, False)
        for agent, action in chosen.items():
            i = self._index[agent]
            if not self._masks[i, action]:
                action = replacement_action(agent, self._masks[i], self.noop_action)
                replaced[agent] = True
            joint[i] = action
        reward, terminated, info = self.env.step(joint)
        self._steps += 1
        acted = list(self.agents)
        obs = self._read()

        metrics = {
            "battle_won": float(bool(info.get("battle_won", False))),
            "dead_allies": float(info.get("dead_allies", 0)),
            "dead_enemies": float(info.get("dead_enemies", 0)),
        }
        dead = (self._masks[:, 0] == 1) & (self._masks[:, 1:].sum(axis=1) == 0)
        if terminated and not info:
            warnings.warn(
                "the game ended the episode without an info dict (a failed StarCraft II "
                "connection?); recorded as a truncation",
                stacklevel=2,
            )
            truncated = True
        else:
            timed_out = bool(info.get("episode_limit", False)) or (
                self.episode_limit is not None and self._steps >= self.episode_limit
            )
            decided = metrics["battle_won"] > 0 or metrics["dead_allies"] >= self.n_agents
            truncated = bool(terminated) and timed_out and not decided
        episode_over = bool(terminated) or truncated

        terminations = {
            a: (episode_over and not truncated) or bool(dead[self._index[a]]) for a in acted
        }
        truncations = {a: truncated and not terminations[a] for a in acted}
        rewards = {a: float(reward) for a in acted}
        self.agents = [a for a in acted if not (terminations[a] or truncations[a])]
        return (
            {a: obs[a] for a in acted},
            rewards,
            terminations,
            truncations,
            self._infos(acted, metrics, replaced),
        )

    def state(self) -> np.ndarray:
        return self._state

    def close(self) -> None:
        self.env.close()

    # -- helpers ----------------------------------------------------------------------------
    def _read(self) -> dict[str, np.ndarray]:
        """Fetch obs, state and masks of the current step (array getters when offered)."""
        get_obs = getattr(self.env, "get_obs_array", None)
        obs = np.asarray(get_obs() if get_obs else self.env.get_obs(), dtype=np.float32)
        get_avail = getattr(self.env, "get_avail_actions_array", None)
        masks = np.asarray(get_avail() if get_avail else self.env.get_avail_actions())
        state = np.asarray(self.env.get_state(), dtype=np.float32).reshape(-1)
        if obs.shape != (self.n_agents, self.obs_dim):
            raise ValueError(
                f"get_obs() gave shape {obs.shape}, expected {(self.n_agents, self.obs_dim)}"
            )
        if masks.shape != (self.n_agents, self.n_actions):
            raise ValueError(
                f"get_avail_actions() gave shape {masks.shape}, "
                f"expected {(self.n_agents, self.n_actions)}"
            )
        if state.shape != (self.state_dim,):
            raise ValueError(f"get_state() gave {state.size} values, expected {self.state_dim}")
        self._masks = masks.astype(np.int8)
        self._state = state
        return {agent: obs[i] for i, agent in enumerate(self.possible_agents)}

    def _infos(
        self, agents: list[str], metrics: dict[str, float], replaced: dict[str, bool]
    ) -> dict[str, dict[str, Any]]:
        return {
            a: {
                "action_mask": self._masks[self._index[a]].copy(),
                **metrics,
                ACTION_REPLACED: replaced[a],
            }
            for a in agents
        }


def _check_sc2_installed() -> None:
    path = Path(os.environ.get("SC2PATH", "~/StarCraftII")).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"StarCraft II not found at {path} (SC2PATH={os.environ.get('SC2PATH')!r}). "
            + SMAC_INSTALL
        )


def _import_starcraft2env(version: str) -> type:
    module = {"smac": "smac.env", "smacv2": "smacv2.env"}.get(version)
    if module is None:
        raise ValueError(f"version must be 'smac' or 'smacv2', got {version!r}")
    try:
        env_module = __import__(module, fromlist=["StarCraft2Env"])
        return env_module.StarCraft2Env
    except ImportError as exc:
        raise ImportError(f"cannot import {module}.StarCraft2Env ({exc}). {SMAC_INSTALL}") from exc


def make_smac_env(
    map_name: str,
    *,
    seed: int = 0,
    version: str = "smac",
    episode_limit: int | None = None,
    **env_kwargs: Any,
) -> SMACParallelEnv:
    """Real SMAC: ``StarCraft2Env(map_name=..., seed=..., **env_kwargs)`` wrapped as a
    PettingZoo env. ``version="smacv2"`` uses smacv2's class (pass its ``capability_config``
    in ``env_kwargs``). Raises ``ImportError``/``FileNotFoundError`` with install instructions
    when smac or StarCraft II is missing."""
    if not isinstance(map_name, str) or not map_name:
        raise ValueError(f"map_name must be a non-empty string, got {map_name!r}")
    cls = _import_starcraft2env(version)
    _check_sc2_installed()
    env = cls(map_name=map_name, seed=int(seed), **env_kwargs)
    return SMACParallelEnv(env, episode_limit=episode_limit)
