"""The sizes of a joint env that the networks, the replay buffer and the memory check need.

A low-level module (no training stack): :mod:`bdps_agents.memory` and the algorithm builders
read an :class:`EnvSpec` without importing :mod:`bdps_agents.training`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bdps_agents.joint_env import JointEnv


@dataclass
class EnvSpec:
    """Sizes read off one joint env."""

    n_agents: int
    n_actions: int
    obs_dim: int
    state_dim: int
    episode_limit: int | None
    observation_space: Any = field(repr=False)
    action_space: Any = field(repr=False)

    @classmethod
    def of(cls, env: JointEnv) -> EnvSpec:
        return cls(
            env.n_agents,
            env.n_actions,
            env.obs_dim,
            env.state_dim,
            env.episode_limit,
            env.observation_space,
            env.action_space,
        )
