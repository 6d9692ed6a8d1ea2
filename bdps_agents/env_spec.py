"""The sizes of a joint env that the networks, the replay buffer and the memory check need.

A low-level module (no training stack): :mod:`bdps_agents.memory` and the algorithm builders
read an :class:`EnvSpec` without importing :mod:`bdps_agents.training`.
"""

from __future__ import annotations

from collections.abc import Mapping
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

    def sizes(self) -> dict[str, int | None]:
        """The sizes the networks are built for, as plain data (saved with a learner's state)."""
        return {key: getattr(self, key) for key in SIZE_KEYS}

    def size_mismatch(self, saved: Mapping[str, Any]) -> str | None:
        """How this env's sizes differ from ``saved`` (:meth:`sizes` of another env), as
        ``"saved for ...; this env has ..."``, or None when the networks fit both."""
        if all(saved.get(key) == getattr(self, key) for key in NETWORK_SIZE_KEYS):
            return None
        return f"saved for {describe_sizes(saved)}; this env has {describe_sizes(self.sizes())}"


# what the networks' shapes depend on; SIZE_KEYS adds what is recorded for the messages
NETWORK_SIZE_KEYS = ("n_agents", "obs_dim", "state_dim", "n_actions")
SIZE_KEYS = (*NETWORK_SIZE_KEYS, "episode_limit")


def describe_sizes(sizes: Mapping[str, Any]) -> str:
    """``"n=2 agents, obs 3, state 6, 4 actions"`` of :meth:`EnvSpec.sizes`."""
    return (
        f"n={sizes.get('n_agents')} agents, obs {sizes.get('obs_dim')}, state "
        f"{sizes.get('state_dim')}, {sizes.get('n_actions')} actions"
    )
