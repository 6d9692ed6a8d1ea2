"""Exploration: the ε schedule and the masked random warm-up."""

from __future__ import annotations

from dataclasses import dataclass

from tianshou.algorithm.algorithm_base import policy_within_training_step
from tianshou.data import Collector, CollectStats

from bdps_agents.policy import MultiAgentQPolicy


@dataclass(frozen=True)
class LinearSchedule:
    """Linear anneal from ``start`` to ``end`` over ``steps`` env steps, then constant."""

    start: float
    end: float
    steps: int

    def __call__(self, step: int) -> float:
        if self.steps <= 0 or step >= self.steps:
            return self.end
        return self.start + (self.end - self.start) * max(step, 0) / self.steps


def warmup(collector: Collector, n_episode: int) -> CollectStats:
    """Prefill ``collector``'s buffer with ``n_episode`` episodes of uniformly random
    *available* actions (masked ε = 1), played through the collector's policy so that BDPS
    stores the roles and groups of every step.

    Use it instead of ``collect(random=True)``, which bypasses the policy (BDPS episodes would
    carry no assignments: the buffer refuses them) and samples unavailable actions. The envs are
    reset first (an unfinished episode is discarded by the buffer); the policy's ε is restored.
    """
    policy = collector.policy
    if not isinstance(policy, MultiAgentQPolicy):
        raise TypeError(f"warmup needs a MultiAgentQPolicy, got {type(policy).__name__}")
    if not isinstance(n_episode, int) or isinstance(n_episode, bool) or n_episode < 1:
        raise ValueError(f"warmup needs n_episode >= 1 episodes, got {n_episode!r}")
    eps = policy.eps_training
    try:
        with policy_within_training_step(policy):
            policy.set_eps_training(1.0)
            collector.reset(reset_buffer=False)
            return collector.collect(n_episode=n_episode)
    finally:
        policy.set_eps_training(eps)
