"""Conventions shared by every environment adapter, and a base class that implements the dull parts.

An *adapter* is a :class:`pettingzoo.ParallelEnv` that exposes a cooperative multi-agent task in
the form that :class:`bdps_agents.joint_env.JointEnv` (and hence the learner) expects:

* **Agent order** is ``possible_agents``; every per-agent array built elsewhere follows it.
* **Action masks** live in ``infos[agent]["action_mask"]``: an ``np.int8`` array of length
  ``action_space(agent).n`` with 1 = available. Both ``reset()`` and ``step()`` return them, for
  every agent in ``agents``. Action spaces are :class:`gymnasium.spaces.Discrete` (start 0).
* **Global state**: ``state()`` returns a ``float32`` vector holding the full information of the
  current step (not a partial observation) and ``state_space`` is a matching
  :class:`gymnasium.spaces.Box`.
* ``noop_action: int`` is the action an inactive (dead, finished) agent takes; it must be a valid
  action index for every agent.
* **Seeding**: ``reset(seed=s)`` makes the following episode fully deterministic, whatever
  happened before (same seed and same actions give the same observations, rewards and infos).
* ``episode_limit: int | None`` (optional) is the time limit of an episode, if known.
* ``metric_keys: tuple[str, ...]`` (optional) names numeric per-episode metrics (e.g. SMAC's
  ``battle_won``) that the adapter writes into the info of *every* agent at *every* step,
  including reset, so that consumers can rely on them being present.
* ``metric_names: Mapping[str, str]`` (optional) gives display names for some ``metric_keys``
  (e.g. ``{"battle_won": "win_rate"}``: SMAC's and SMAX's win rate); a key without an entry is
  shown under its own name. Every entry's key is one of ``metric_keys``.
* ``frame_drawer: str | None`` (optional) names the adapter's :class:`FrameDrawer` as a lazy
  ``"module:attr"`` string (``bdps render`` imports it only when it draws frames, so the
  adapter's module imports no plotting code); ``None``: the adapter is not drawn.
* Ending an episode: ``terminations`` for a true end of the task (no future reward),
  ``truncations`` for a time limit; afterwards ``agents`` is ``[]`` and stepping again raises
  ``RuntimeError`` until ``reset()``.
* Actions are validated at the boundary: an unknown, missing or finished agent, or an action
  that is not an integer in ``[0, n)``, raises ``ValueError`` naming the agent.
* **Unavailable actions are replaced, and reported.** Gymnasium's contract is that every element
  of the action space is a valid argument to ``step`` (PettingZoo's ``parallel_api_test`` samples
  uniformly from it), so an action inside the space that the agent's mask forbids is not an
  error: the adapter runs :func:`replacement_action` instead (``noop_action`` if the mask allows
  it, otherwise the lowest available action) and sets ``infos[agent]["action_replaced"]``
  (:data:`ACTION_REPLACED`) to ``True`` for that step. The key is in every agent's info that
  ``reset`` and ``step`` return (``False`` at reset and for agents whose action ran), and the
  simulator never receives an unavailable action. Learners should not rely on this:
  :class:`~bdps_agents.joint_env.JointEnv` refuses unavailable actions with a ``ValueError``
  before they reach the adapter.

**Array-native adapters** (optional). An adapter whose simulator works on per-agent arrays may
also define ``step_arrays(actions) -> ArrayStep``: the same transition as ``step`` (same
validation, same replacement of unavailable actions, reported in ``ArrayStep.replaced``, same
effect on the env), taking one action per agent of ``possible_agents`` (actions of agents not in
``agents`` are ignored) and returning arrays in ``possible_agents`` order instead of per-agent
dicts. :class:`~bdps_agents.joint_env.JointEnv` then skips the round trip through dicts (≈ 8–10%
faster collection on LBF). It uses ``step_arrays`` only when it is defined by the class that
defines ``step`` or by a subclass of it: wrappers that forward attributes to the env they wrap,
and subclasses that override ``step`` alone, keep being stepped through ``step``. Such an adapter
reports every agent that leaves ``agents`` as terminated or truncated, has Box observations of
one size, and returns every ``metric_keys`` entry in ``ArrayStep.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper

__all__ = [
    "ACTION_REPLACED",
    "ActionMaskInObservation",
    "ArrayStep",
    "FrameDrawer",
    "MultiAgentEnvAdapter",
    "StepResult",
    "action_mask",
    "check_action_array",
    "check_adapter_conventions",
    "check_available",
    "replacement_action",
    "to_action_index",
]

#: The info key that reports a replaced unavailable action (see the module docstring).
ACTION_REPLACED = "action_replaced"


# What a parallel env's ``step`` returns: observations, rewards, terminations, truncations, infos.
StepResult = tuple[
    dict[str, np.ndarray],
    dict[str, float],
    dict[str, bool],
    dict[str, bool],
    dict[str, dict[str, Any]],
]


class ArrayStep(NamedTuple):
    """What an array-native adapter's ``step_arrays`` returns; row i is ``possible_agents[i]``.

    Rows of agents that were not in ``agents`` before the step hold zeros (never read). The
    arrays are fresh (not views of the env's state): ``JointEnv`` hands them on without copying.
    """

    obs: np.ndarray  # (n, d) float32 observations (flat; d = the observation size)
    rewards: np.ndarray  # (n,) rewards of the agents that acted
    terminated: np.ndarray  # (n,) bool, as ``terminations``
    truncated: np.ndarray  # (n,) bool, as ``truncations``
    masks: np.ndarray  # (n, A) int8 action masks, as ``infos[agent]["action_mask"]``
    metrics: dict[str, float]  # one value per ``metric_keys`` entry
    # (n,) bool, as ``infos[agent]["action_replaced"]``; None: the adapter does not report it
    replaced: np.ndarray | None = None


class FrameDrawer(NamedTuple):
    """How ``bdps render`` draws an adapter's frames (named by the adapter's ``frame_drawer``).

    ``env`` is the adapter or a :class:`~bdps_agents.joint_env.JointEnv` around it."""

    kind: str  # a short name, e.g. "lbf" (bdps_agents.render.frame_kind)
    # draw(ax, env, roles=None, groups=None) -> artists: the current state on a cleared Axes
    draw: Callable[..., dict[str, Any]]
    figsize: Callable[[Any], tuple[float, float]]  # figsize(env): the figure's size in inches


_NUMPY_INTS = frozenset(np.sctypeDict[f"{k}{b}"] for k in ("int", "uint") for b in (8, 16, 32, 64))


def to_action_index(agent: str, action: Any, n: int) -> int:
    """Return ``action`` as an ``int`` in ``[0, n)``, or raise ``ValueError`` naming ``agent``.

    Accepts Python ints and NumPy integer scalars or 0-d arrays; ``bool`` and floats are refused
    because they nearly always mean a bug upstream (e.g. a Q-value passed instead of an argmax).
    """
    if type(action) is int or type(action) in _NUMPY_INTS:  # the common case, checked cheaply
        if not 0 <= action < n:
            raise ValueError(f"action {action} for agent {agent!r} is outside the range [0, {n})")
        return int(action)
    arr = np.asarray(action)
    if arr.ndim != 0 or isinstance(action, bool) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"action for agent {agent!r} must be an integer scalar, got {action!r}")
    value = int(arr)
    if not 0 <= value < n:
        raise ValueError(f"action {value} for agent {agent!r} is outside the range [0, {n})")
    return value


def check_action_array(actions: Any, agents: list[str], n_actions: int) -> list[int]:
    """One integer action per agent (array-like, shape ``(len(agents),)``) as a list of ints in
    ``[0, n_actions)``, or ``ValueError`` naming what is wrong (and the agent, for a bad value)."""
    arr = np.asarray(actions)
    if arr.shape != (len(agents),):
        raise ValueError(
            f"joint action must have shape ({len(agents)},) (one per agent in {agents}), got "
            f"shape {arr.shape}"
        )
    if arr.dtype.kind not in "iu":  # bool is "b"
        raise ValueError(f"joint action must hold integers, got dtype {arr.dtype}: {arr}")
    acts = arr.tolist()
    if min(acts) < 0 or max(acts) >= n_actions:
        i = next(i for i, a in enumerate(acts) if not 0 <= a < n_actions)
        raise ValueError(f"action {acts[i]} of agent {agents[i]!r} is outside [0, {n_actions})")
    return acts


def check_available(agent: str, action: int, mask: np.ndarray) -> None:
    """``ValueError`` naming ``agent`` and its available actions unless ``mask[action]`` is set.

    For callers that refuse unavailable actions; built-in adapters replace them instead (see
    :func:`replacement_action`)."""
    if not mask[action]:
        available = np.flatnonzero(mask).tolist()
        raise ValueError(f"action {action} is not available to {agent!r} (available: {available})")


def replacement_action(agent: str, mask: np.ndarray, noop_action: int) -> int:
    """The action an adapter runs instead of one that ``mask`` forbids: ``noop_action`` if the
    mask allows it, otherwise the lowest available action (SMAC's live agents: 1 = stop).

    One rule for every adapter, so that a replaced step means the same thing everywhere. A mask
    without any available action is the env's fault, not the caller's: ``RuntimeError``."""
    if mask[noop_action]:
        return noop_action
    available = np.flatnonzero(mask)
    if available.size == 0:
        raise RuntimeError(f"the env gives agent {agent!r} no available action to run instead")
    return int(available[0])


def action_mask(available: Iterable[int], n: int) -> np.ndarray:
    """An ``np.int8`` mask of length ``n`` with 1 at each index in ``available``."""
    mask = np.zeros(n, dtype=np.int8)
    mask[list(available)] = 1
    return mask


class MultiAgentEnvAdapter(ParallelEnv[str, np.ndarray, int]):
    """Base class for adapters: declares the convention attributes and validates actions.

    Subclasses set ``possible_agents``, ``agents``, ``state_space``, ``observation_spaces`` and
    ``action_spaces`` (agent -> space; the getters return the same object on every call, as
    PettingZoo requires) and implement ``reset``, ``step`` and ``state``.
    """

    noop_action: int = 0
    episode_limit: int | None = None
    metric_keys: tuple[str, ...] = ()
    metric_names: Mapping[str, str] = {}
    frame_drawer: str | None = None
    possible_agents: list[str]
    agents: list[str]
    state_space: gymnasium.spaces.Box
    # agent -> space, filled by subclasses; the getters below return these same objects
    observation_spaces: dict[str, gymnasium.spaces.Space]
    action_spaces: dict[str, gymnasium.spaces.Discrete]

    def observation_space(self, agent: str) -> gymnasium.spaces.Space:
        return self._space_of(self.observation_spaces, agent)

    def action_space(self, agent: str) -> gymnasium.spaces.Discrete:
        return self._space_of(self.action_spaces, agent)

    def _space_of(self, spaces: Mapping[str, Any], agent: str) -> Any:
        try:
            return spaces[agent]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown agent {agent!r}; agents are {list(self.possible_agents)}"
            ) from None

    def _validate_actions(self, actions: Mapping[str, Any]) -> dict[str, int]:
        """Check a joint action against ``agents`` and the action spaces; return plain ints.

        Raises ``RuntimeError`` when no episode is running and ``ValueError`` for an unknown,
        finished or missing agent or a malformed action.
        """
        if not self.agents:
            raise RuntimeError("the episode is over (or never started): call reset() first")
        if not isinstance(actions, Mapping):
            raise ValueError(f"actions must be a dict agent -> int, got {type(actions).__name__}")
        live = set(self.agents)
        for agent in actions:
            if agent not in self.possible_agents:
                raise ValueError(
                    f"unknown agent {agent!r}; agents are {list(self.possible_agents)}"
                )
            if agent not in live:
                raise ValueError(f"agent {agent!r} has finished and cannot act")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"no action given for live agent(s) {missing}")
        return {
            agent: to_action_index(agent, actions[agent], int(self.action_space(agent).n))
            for agent in self.agents
        }


class ActionMaskInObservation(BaseParallelWrapper):
    """Observations as ``{"observation": obs, "action_mask": mask}`` (PettingZoo's AEC style).

    For tools that look for masks only in observations and otherwise sample uniformly from the
    action space (e.g. ``pettingzoo.test.parallel_api_test``, which then samples
    ``action_space.sample(mask=obs["action_mask"])``): with it they choose only available
    actions, so nothing is replaced. Adapters do not need it to accept such tools' actions.
    """

    def __init__(self, env: ParallelEnv) -> None:
        super().__init__(env)
        self._spaces = {
            agent: gymnasium.spaces.Dict(
                {
                    "observation": env.observation_space(agent),
                    "action_mask": gymnasium.spaces.Box(
                        0, 1, (int(env.action_space(agent).n),), dtype=np.int8
                    ),
                }
            )
            for agent in env.possible_agents
        }

    def observation_space(self, agent: str) -> gymnasium.spaces.Dict:
        return self._spaces[agent]

    @staticmethod
    def _merge(obs: dict[str, Any], infos: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {
            a: {"observation": o, "action_mask": infos[a]["action_mask"]} for a, o in obs.items()
        }

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, infos = self.env.reset(seed=seed, options=options)
        return self._merge(obs, infos), infos

    def step(self, actions: dict[str, Any]):
        obs, rewards, terms, truncs, infos = self.env.step(actions)
        return self._merge(obs, infos), rewards, terms, truncs, infos


def check_adapter_conventions(env: ParallelEnv, *, seed: int = 0, max_steps: int = 200) -> None:
    """Run one seeded episode with random *available* actions and assert the conventions above
    (``action_replaced`` must be present and ``False``: no available action is replaced).

    Meant for adapter tests (any adapter, built-in or third-party); raises ``AssertionError``.
    """
    rng = np.random.default_rng(seed)
    obs, infos = env.reset(seed=seed)
    assert list(env.agents) == list(env.possible_agents), "all agents start live"
    assert isinstance(env.state_space, gymnasium.spaces.Box)
    noop = int(env.noop_action)
    for agent in env.possible_agents:
        space = env.action_space(agent)
        assert isinstance(space, gymnasium.spaces.Discrete) and int(space.start) == 0
        assert 0 <= noop < int(space.n), f"noop_action {noop} invalid for {agent}"
    metric_keys = tuple(getattr(env, "metric_keys", ()))
    for _ in range(max_steps):
        state = env.state()
        assert state.dtype == np.float32 and state.shape == env.state_space.shape
        for agent in env.agents:
            mask = infos[agent]["action_mask"]
            assert mask.dtype == np.int8 and mask.shape == (env.action_space(agent).n,)
            assert mask.any(), f"{agent} has no available action"
            assert infos[agent][ACTION_REPLACED] is False, f"{ACTION_REPLACED} of {agent}"
            for key in metric_keys:
                assert np.isscalar(infos[agent][key]), f"metric {key!r} missing for {agent}"
            assert env.observation_space(agent).contains(obs[agent])
        actions = {a: int(rng.choice(np.flatnonzero(infos[a]["action_mask"]))) for a in env.agents}
        obs, rewards, _terms, _truncs, infos = env.step(actions)
        assert set(rewards) == set(actions)
        if not env.agents:
            break
    else:
        raise AssertionError(f"episode did not end within {max_steps} steps")
