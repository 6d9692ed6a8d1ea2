"""``CorridorEnv``: ``n_agents`` agents start in cell 0 of a corridor of ``length`` cells; each
step an agent waits (0), moves left (1) or right (2). Walls mask the moves that would leave the
corridor. The team gets a reward of 1 (every agent the same) and the episode ends when every
agent stands in the last cell; the time limit is ``episode_limit`` steps.

It subclasses :class:`bdps_agents.adapters.base.MultiAgentEnvAdapter`, which declares the
adapter conventions and validates actions; an unavailable action is replaced by the wait and
reported in ``infos[agent]["action_replaced"]``, as the conventions ask.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from bdps_agents.adapters.base import (
    ACTION_REPLACED,
    MultiAgentEnvAdapter,
    action_mask,
    replacement_action,
)

WAIT, LEFT, RIGHT = 0, 1, 2


class CorridorEnv(MultiAgentEnvAdapter):
    noop_action = WAIT
    metric_keys = ("at_goal",)  # fraction of agents in the last cell, in every agent's info
    metric_names: ClassVar[dict[str, str]] = {"at_goal": "goal_fraction"}
    # a lazy "module:attr": bdps render imports the drawer (and matplotlib) only to draw
    frame_drawer = "bdps_example_adapter.render:DRAWER"

    def __init__(self, n_agents: int = 2, length: int = 6, episode_limit: int = 20) -> None:
        self.check_kwargs(n_agents=n_agents, length=length, episode_limit=episode_limit)
        self.length, self.episode_limit = length, episode_limit
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.agents = []
        # observation: one-hot of the own cell, then the fraction of agents at the goal
        obs_space = spaces.Box(0.0, 1.0, (length + 1,), np.float32)
        self.observation_spaces = dict.fromkeys(self.possible_agents, obs_space)
        self.action_spaces = {a: spaces.Discrete(3) for a in self.possible_agents}
        # state: every agent's position / (length - 1), and the time left
        self.state_space = spaces.Box(0.0, 1.0, (n_agents + 1,), np.float32)
        self.positions = np.zeros(n_agents, dtype=np.int64)
        self.t = 0

    @staticmethod
    def check_kwargs(n_agents: int = 2, length: int = 6, episode_limit: int = 20) -> None:
        """Refuse values the env cannot use; bdps-agents calls it when a config is validated."""
        for name, value, low in (
            ("n_agents", n_agents, 1),
            ("length", length, 2),
            ("episode_limit", episode_limit, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    # -- PettingZoo API -------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        self.agents = list(self.possible_agents)
        self.positions[:] = 0
        self.t = 0
        return self._observations(), self._infos(replaced=set())

    def step(self, actions: dict[str, Any]):
        acts = self._validate_actions(actions)
        replaced = set()
        for i, agent in enumerate(self.possible_agents):
            mask = self._mask(i)
            if not mask[acts[agent]]:
                acts[agent] = replacement_action(agent, mask, self.noop_action)
                replaced.add(agent)
            self.positions[i] += {WAIT: 0, LEFT: -1, RIGHT: 1}[acts[agent]]
        self.t += 1
        done = bool((self.positions == self.length - 1).all())
        timeout = not done and self.t >= self.episode_limit
        rewards = {a: float(done) for a in self.agents}
        terms = dict.fromkeys(self.agents, done)
        truncs = dict.fromkeys(self.agents, timeout)
        obs, infos = self._observations(), self._infos(replaced)
        if done or timeout:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def state(self) -> np.ndarray:
        time_left = (self.episode_limit - self.t) / self.episode_limit
        return np.append(self.positions / (self.length - 1), time_left).astype(np.float32)

    # -- helpers --------------------------------------------------------------------------
    def _mask(self, i: int) -> np.ndarray:
        allowed = [WAIT]
        if self.positions[i] > 0:
            allowed.append(LEFT)
        if self.positions[i] < self.length - 1:
            allowed.append(RIGHT)
        return action_mask(allowed, 3)

    def _at_goal(self) -> float:
        return float((self.positions == self.length - 1).mean())

    def _observations(self) -> dict[str, np.ndarray]:
        out = {}
        for i, agent in enumerate(self.possible_agents):
            obs = np.zeros(self.length + 1, dtype=np.float32)
            obs[self.positions[i]] = 1.0
            obs[-1] = self._at_goal()
            out[agent] = obs
        return out

    def _infos(self, replaced: set[str]) -> dict[str, dict[str, Any]]:
        at_goal = self._at_goal()
        return {
            agent: {
                "action_mask": self._mask(i),
                ACTION_REPLACED: agent in replaced,
                "at_goal": at_goal,
            }
            for i, agent in enumerate(self.possible_agents)
        }
