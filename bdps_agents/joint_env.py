"""Any PettingZoo parallel env presented to Tianshou as one joint ``gymnasium.Env``.

Observation (a ``Dict``, which Tianshou's Collector stacks into ``batch.obs.obs`` etc.):

* ``"obs"``: ``(n, d_max)`` float32, agent ``i`` = ``possible_agents[i]``; observations are
  flattened and zero-padded to the largest size; inactive agents get all zeros.
* ``"state"``: ``(S,)`` float32: ``env.state()`` when the env declares ``state_space``, else the
  concatenation of the padded observations (``n * d_max``, zeros for inactive agents).
* ``"mask"``: ``(n, A_max)`` int8, 1 = available. Taken from ``infos[agent]["action_mask"]``,
  else from a dict observation's ``"action_mask"`` (the PettingZoo classic style
  ``{"observation", "action_mask"}``), else all real actions. Padded actions are 0; an inactive
  agent, and a live agent whose mask has no available action (e.g. waiting for its turn), has
  only ``noop_action`` available.
* ``"alive"``: ``(n,)`` int8, 1 for agents whose observation is shown (see *live* below).

Action: ``MultiDiscrete([A_max] * n)``. Only live agents' actions are sent to the env; an action
that the mask marks unavailable for a live agent raises ``ValueError``, on both paths below.
Adapters would run a replacement for it and report that in the info (the Gymnasium contract, see
:mod:`bdps_agents.adapters.base`), but a learner that picks a masked action has a bug, and the
transition stored would not be the action taken. Inactive agents' actions are only range-checked
and then dropped.

An agent is *live* while it is in ``env.agents`` and was not reported terminated/truncated.
Agents that are not live get zero observations and only ``noop_action`` available, except on the
step where an agent is truncated: it keeps its real last observation and mask there, because a
learner bootstraps from them (a truncated episode's ``obs_next`` must be genuine). The
joint episode ends when no agent is live; it is ``terminated`` if every agent that finished on
the last step reported ``terminated=True`` and none ``truncated=True``, otherwise ``truncated``.
(That rule is :func:`bdps_agents.episode_rule.joint_episode_end`, shared with
:class:`~bdps_agents.adapters.smax.vector.SMAXVectorEnv`.)
The team reward is the sum (or mean) of the rewards the env returned on the step. An env that
gives every agent the same team reward (MPE's speaker-listener, SMAX, GRF's scoring) wants
``reward_aggregation="mean"``: the sum counts that reward once per agent. Left at its default,
``sum``, a first episode whose agents all got the same rewards draws a warning
(:mod:`bdps_agents.wrapped_env`, which also warns of a ``state()`` without ``state_space``).

Adapters that define ``step_arrays`` (array-native, see :mod:`bdps_agents.adapters.base`) are
stepped through it, with the same results and without per-agent dicts (``JointEnv`` checks the
actions against its masks first, as on the dict path); reset uses ``reset``.

``info`` is flat and has the same numeric keys at reset and every step (Tianshou stores it in
its replay buffer): ``n_alive`` (int) and each of ``env.metric_keys`` (float, read from the first
agent info that has it, 0.0 if none does).
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from bdps_agents.adapters import make_env
from bdps_agents.adapters.base import ArrayStep, check_action_array
from bdps_agents.episode_rule import joint_action_mask, joint_episode_end
from bdps_agents.wrapped_env import (
    SharedRewardWatch,
    check_wrapped_env,
    episode_limit_of,
    inner_obs_space,
    is_array_native,
    warn_undeclared_state,
)

__all__ = ["JointEnv", "make_joint_env"]


class JointEnv(gymnasium.Env[dict[str, np.ndarray], np.ndarray]):
    """Joint (centralised) view of a PettingZoo ``ParallelEnv``; see the module docstring.

    Attributes: ``agents`` (= ``possible_agents``), ``n_agents``, ``n_actions`` (``A_max``),
    ``obs_dim`` (``d_max``), ``state_dim``, ``episode_limit``, ``metric_keys``, ``metric_names``,
    ``noop_action``, ``env`` (the wrapped env), ``source`` (``{"adapter", "kwargs",
    "reward_aggregation"}`` when made by :func:`make_joint_env` or ``bdps train``, else None).

    ``reward_aggregation``: ``"sum"`` (the default) or ``"mean"`` of the agents' rewards; see
    the module docstring for envs with one shared team reward.

    ``episode_limit`` (the most steps an episode can last; BDPS checks its intervals against it)
    is the argument if given, else the env's ``episode_limit``, else the ``max_cycles`` of the
    unwrapped env (PettingZoo's MPE, SISL and Butterfly envs), else ``None`` (unknown).
    """

    def __init__(
        self,
        env: ParallelEnv,
        reward_aggregation: Literal["sum", "mean"] | None = None,
        noop_action: int | None = None,
        episode_limit: int | None = None,
    ) -> None:
        check_wrapped_env(env)
        # None: "sum", watched for a shared team reward that it would count once per agent
        self._shared_reward = SharedRewardWatch(reward_aggregation is None)
        reward_aggregation = reward_aggregation or "sum"
        if reward_aggregation not in ("sum", "mean"):
            raise ValueError(
                f"reward_aggregation must be 'sum' or 'mean', got {reward_aggregation!r}"
            )
        self.env = env
        self.reward_aggregation = reward_aggregation
        self.agents: list[str] = list(env.possible_agents)
        if not self.agents:
            raise ValueError("the env has no possible_agents")
        self.n_agents = len(self.agents)
        self._index = {a: i for i, a in enumerate(self.agents)}

        self._n_actions_per_agent: list[int] = []
        self._obs_spaces: list[spaces.Space] = []
        for agent in self.agents:
            act_space = env.action_space(agent)
            if not isinstance(act_space, spaces.Discrete) or int(act_space.start) != 0:
                raise TypeError(
                    f"JointEnv supports only Discrete action spaces starting at 0; agent "
                    f"{agent!r} has {act_space}"
                )
            self._n_actions_per_agent.append(int(act_space.n))
            self._obs_spaces.append(inner_obs_space(env.observation_space(agent)))
        self._obs_dims = [spaces.flatdim(s) for s in self._obs_spaces]
        self._box_obs = [isinstance(s, spaces.Box) for s in self._obs_spaces]
        self.n_actions = max(self._n_actions_per_agent)
        self.obs_dim = max(self._obs_dims)

        self.noop_action = int(
            getattr(env, "noop_action", 0) if noop_action is None else noop_action
        )
        for agent, n in zip(self.agents, self._n_actions_per_agent, strict=True):
            if not 0 <= self.noop_action < n:
                raise ValueError(
                    f"noop_action {self.noop_action} is not an action of agent {agent!r} "
                    f"(Discrete({n}))"
                )

        # PettingZoo envs (and its conversion wrappers) declare state_space iff they have state().
        try:
            state_space = getattr(env, "state_space", None)
        except NotImplementedError:
            state_space = None
        self._use_env_state = state_space is not None
        self.state_dim = (
            spaces.flatdim(state_space) if state_space is not None else self.n_agents * self.obs_dim
        )

        self.episode_limit = episode_limit_of(env) if episode_limit is None else episode_limit
        if self.episode_limit is not None and (
            isinstance(self.episode_limit, bool)
            or not isinstance(self.episode_limit, int)
            or self.episode_limit < 1
        ):
            raise ValueError(f"episode_limit must be an integer >= 1, got {self.episode_limit!r}")
        self.metric_keys: tuple[str, ...] = tuple(getattr(env, "metric_keys", ()))
        # display names of some metric keys (the adapter's ``metric_names``; see adapters.base)
        self.metric_names: dict[str, str] = dict(getattr(env, "metric_names", {}))
        if "n_alive" in self.metric_keys:
            raise ValueError("metric key 'n_alive' is reserved by JointEnv")

        self.observation_space = spaces.Dict(
            {
                "obs": spaces.Box(-np.inf, np.inf, (self.n_agents, self.obs_dim), np.float32),
                "state": spaces.Box(-np.inf, np.inf, (self.state_dim,), np.float32),
                "mask": spaces.Box(0, 1, (self.n_agents, self.n_actions), np.int8),
                # 1 for agents still in the episode; BDPS's group selector attends only to them
                "alive": spaces.Box(0, 1, (self.n_agents,), np.int8),
            }
        )
        self.action_space = spaces.MultiDiscrete([self.n_actions] * self.n_agents)
        self.render_mode = getattr(env, "render_mode", None)
        self.metadata = {"render_modes": list(getattr(env, "metadata", {}).get("render_modes", []))}

        # (non-Box or unequal observations or action counts take the dict path, which flattens
        # and pads them)
        native = (
            is_array_native(env)
            and all(self._box_obs)
            and len(set(self._obs_dims)) == 1
            and len(set(self._n_actions_per_agent)) == 1
        )
        self._step_arrays = env.step_arrays if native else None
        self._rows = np.arange(self.n_agents)
        self._live = np.zeros(self.n_agents, dtype=bool)
        self._mask = np.zeros((self.n_agents, self.n_actions), dtype=np.int8)
        self._running = False
        self._state_probed = self._use_env_state  # whether an undeclared state() was looked for
        # the registered adapter and arguments it was made from (config env section), or None
        # when an env was wrapped by hand: a learner's checkpoint records it for `bdps eval`
        self.source: dict[str, Any] | None = None

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        obs, infos = self.env.reset(seed=seed, options=options)
        self._live = np.array([a in set(self.env.agents) for a in self.agents], dtype=bool)
        if not self._live.any():
            raise RuntimeError("the env has no live agent after reset()")
        self._running = True
        if not self._state_probed:
            self._state_probed = True
            warn_undeclared_state(self.env)
        return self._joint_obs(obs, infos, self._live), self._info(infos)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if not self._running:
            raise RuntimeError("the episode is over (or never started): call reset() first")
        if self._step_arrays is not None:
            return self._step_native(action)
        act = self._validate(action)
        was_live = self._live.tolist()
        actions = {a: x for a, x, alive in zip(self.agents, act, was_live, strict=True) if alive}
        obs, rewards, terms, truncs, infos = self.env.step(actions)

        env_agents = set(self.env.agents)
        end = joint_episode_end(
            self._live,
            [bool(terms.get(a, False)) for a in self.agents],
            [bool(truncs.get(a, False)) for a in self.agents],
            present=[a in env_agents for a in self.agents],
            observed=[a in obs for a in self.agents],
        )
        if not end.live.any():
            self._running = False
        reward = self._team_reward([r for a, r in rewards.items() if a in self._index])
        self._live = end.live
        joint_obs = self._joint_obs(obs, infos, end.visible)
        return joint_obs, reward, bool(end.terminated), bool(end.truncated), self._info(infos)

    def _step_native(
        self, action: Any
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """``step`` through the adapter's ``step_arrays``: the same rules on arrays.

        The actions are checked against ``JointEnv``'s mask here, as on the dict path: the
        adapter would replace an unavailable action instead of refusing it."""
        assert self._step_arrays is not None  # step() comes here only for step_arrays adapters
        self._validate(action)
        out: ArrayStep = self._step_arrays(action)
        n, d, A = self.n_agents, self.obs_dim, self.n_actions
        if out.obs.shape != (n, d) or out.masks.shape != (n, A) or out.rewards.shape != (n,):
            raise ValueError(
                f"{type(self.env).__name__}.step_arrays returned obs {out.obs.shape}, masks "
                f"{out.masks.shape} and rewards {out.rewards.shape}; expected {(n, d)}, "
                f"{(n, A)} and {(n,)}"
            )
        was_live = self._live
        end = joint_episode_end(was_live, out.terminated, out.truncated)
        live, visible = end.live, end.visible
        if not live.any():
            self._running = False
        reward = self._team_reward(out.rewards[was_live].tolist())
        self._live = live
        joint = np.asarray(out.obs, dtype=np.float32)
        if not visible.all():
            joint = np.where(visible[:, None], joint, np.float32(0))
        available = out.masks
        info: dict[str, Any] = {"n_alive": int(live.sum())}
        for key in self.metric_keys:
            info[key] = float(out.metrics[key])
        observation = self._observation(joint, available, visible)
        return observation, reward, bool(end.terminated), bool(end.truncated), info

    def _team_reward(self, values: list[float]) -> float:
        """The team reward of one step from the rewards of the agents that acted (called after
        the step's end is known)."""
        self._shared_reward.step(values, episode_over=not self._running)
        reward = float(sum(values))
        if values and self.reward_aggregation == "mean":
            reward /= len(values)
        return reward

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()

    # ------------------------------------------------------------------ helpers
    def _validate(self, action: Any) -> list[int]:
        """The joint action as ints; ``ValueError`` naming the agent for a bad or unavailable
        action of a live agent (the adapters would replace the latter: see the module docstring).
        """
        acts = check_action_array(action, self.agents, self.n_actions)
        unavailable = self._live & (self._mask[self._rows, acts] == 0)
        if unavailable.any():
            i = int(np.flatnonzero(unavailable)[0])
            raise ValueError(
                f"action {acts[i]} is unavailable for agent {self.agents[i]!r}; "
                f"available actions: {np.flatnonzero(self._mask[i]).tolist()} (a random warm-up "
                "with Collector.collect(random=True) ignores the masks: use "
                "bdps_agents.pipeline.warmup(collector, n_episode) instead)"
            )
        return acts

    def _joint_obs(
        self, obs: dict[str, Any], infos: dict[str, dict[str, Any]], visible: np.ndarray
    ) -> dict[str, np.ndarray]:
        joint = np.zeros((self.n_agents, self.obs_dim), dtype=np.float32)
        available = np.zeros((self.n_agents, self.n_actions), dtype=bool)  # casting: != 0
        for i, agent in enumerate(self.agents):
            if not visible[i]:  # hidden agents get the no-op only (below)
                continue
            raw = obs.get(agent)
            if raw is None:
                raise RuntimeError(f"the env returned no observation for live agent {agent!r}")
            dict_mask = None
            if isinstance(raw, dict) and "observation" in raw:
                dict_mask = raw.get("action_mask")
                raw = raw["observation"]
            if self._box_obs[i]:  # the common case; skips gymnasium's generic flatten
                joint[i, : self._obs_dims[i]] = np.asarray(raw, dtype=np.float32).reshape(-1)
            else:
                flat = np.asarray(spaces.flatten(self._obs_spaces[i], raw), dtype=np.float32)
                joint[i, : self._obs_dims[i]] = flat.ravel()
            agent_mask = (infos.get(agent) or {}).get("action_mask", dict_mask)
            n = self._n_actions_per_agent[i]
            if agent_mask is None:
                available[i, :n] = True
            else:
                shape = agent_mask.shape if type(agent_mask) is np.ndarray else np.shape(agent_mask)
                if shape != (n,):
                    raise ValueError(
                        f"action mask of agent {agent!r} has shape {np.shape(agent_mask)}, "
                        f"expected ({n},)"
                    )
                available[i, :n] = agent_mask
        return self._observation(joint, available, visible)

    def _observation(
        self, joint: np.ndarray, available: np.ndarray, visible: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The joint observation from padded observations and masks (nonzero = available; rows
        of hidden agents are masked here: :func:`~bdps_agents.episode_rule.joint_action_mask`);
        records the mask for the next action check."""
        # A live agent that cannot act (e.g. waiting for its turn) still needs one selectable
        # action; the no-op is forwarded and the env ignores or applies it.
        mask = joint_action_mask(available, visible, self.noop_action)
        self._mask = mask
        return {
            "obs": joint,
            "state": self._state(joint),
            "mask": mask.copy(),
            "alive": visible.astype(np.int8),
        }

    def _state(self, joint_obs: np.ndarray) -> np.ndarray:
        if not self._use_env_state:
            return joint_obs.reshape(-1).copy()
        try:
            state = self.env.state()
        except NotImplementedError as exc:
            raise TypeError(
                f"{type(self.env).__name__} declares state_space but state() is not implemented"
            ) from exc
        state = np.asarray(state, dtype=np.float32).reshape(-1)
        if state.shape != (self.state_dim,):
            raise ValueError(
                f"env.state() has {state.size} values but state_space says {self.state_dim}"
            )
        return state.copy()  # the env may hand out a view of its internals

    def _info(self, infos: dict[str, dict[str, Any]]) -> dict[str, Any]:
        info: dict[str, Any] = {"n_alive": int(self._live.sum())}
        for key in self.metric_keys:
            value = 0.0
            for agent in self.agents:
                agent_info = infos.get(agent)
                if agent_info and key in agent_info:
                    value = float(agent_info[key])
                    break
            info[key] = value
        return info


def make_joint_env(
    name: str,
    *,
    reward_aggregation: Literal["sum", "mean"] | None = None,
    noop_action: int | None = None,
    **env_kwargs: Any,
) -> JointEnv:
    """``JointEnv(make_env(name, **env_kwargs), ...)``: the learner's entry point to any adapter.

    The env remembers ``name`` and ``env_kwargs`` (``source``), so that a learner built on it
    records them in its config and ``bdps eval`` can rebuild the env from a saved learner."""
    joint = JointEnv(
        make_env(name, **env_kwargs), reward_aggregation=reward_aggregation, noop_action=noop_action
    )
    if noop_action is None:  # the config has no noop_action: another one is not reproducible
        joint.source = {
            "adapter": name,
            "kwargs": dict(env_kwargs),
            "reward_aggregation": reward_aggregation or "sum",
        }
    return joint
