"""Exploration: the ε schedule and the masked random warm-up."""

from __future__ import annotations

from dataclasses import dataclass

from tianshou.algorithm.algorithm_base import policy_within_training_step
from tianshou.data import Collector, CollectStats

from bdps_agents.policy import MultiAgentQPolicy
from bdps_agents.replay import EpisodeReplayBuffer


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


def check_sub_buffers(buffer: object, n_envs: int) -> None:
    """``ValueError`` unless an episode replay ``buffer`` has one sub-buffer per env that its
    collector steps: ``build_learner(num_envs=...)`` must equal the vector env's size. (Tianshou
    refuses fewer sub-buffers with a terse message, and takes more silently: they would stay
    empty.)"""
    if isinstance(buffer, EpisodeReplayBuffer) and buffer.buffer_num != n_envs:
        raise ValueError(
            f"the collector steps {n_envs} env(s) but its replay buffer has {buffer.buffer_num} "
            f"sub-buffer(s), one per training env: build the learner with "
            f"build_learner(..., num_envs={n_envs})"
        )


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
    check_sub_buffers(collector.buffer, collector.env_num)
    eps = policy.eps_training
    try:
        with policy_within_training_step(policy):
            policy.set_eps_training(1.0)
            collector.reset(reset_buffer=False)
            return collector.collect(n_episode=n_episode)
    finally:
        policy.set_eps_training(eps)
