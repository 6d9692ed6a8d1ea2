"""Algorithms built for a synthetic env of given sizes (no simulator: only the spaces)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from bdps_agents.algorithms import build_algorithm
from bdps_agents.config import build_config
from bdps_agents.env_spec import EnvSpec

STATE_DIM, EPISODE_LIMIT = 4, 10


def synthetic_spec(n_agents: int, obs_dim: int, n_actions: int) -> EnvSpec:
    """The spec of a joint env with ``n_agents`` agents, ``obs_dim`` observations and
    ``n_actions`` actions (a 4-float state, episodes of at most 10 steps)."""
    spaces = {
        "obs": gym.spaces.Box(-np.inf, np.inf, (n_agents, obs_dim), np.float32),
        "mask": gym.spaces.Box(0, 1, (n_agents, n_actions), np.int8),
        "state": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32),
    }
    return EnvSpec(
        n_agents, n_actions, obs_dim, STATE_DIM, EPISODE_LIMIT, gym.spaces.Dict(spaces),
        gym.spaces.MultiDiscrete([n_actions] * n_agents),
    )  # fmt: skip


def synthetic_algorithm(config: dict[str, Any], n_agents: int, obs_dim: int, n_actions: int) -> Any:
    """``build_algorithm`` of the config (a nested dict) for :func:`synthetic_spec`."""
    return build_algorithm(build_config(config), synthetic_spec(n_agents, obs_dim, n_actions))
