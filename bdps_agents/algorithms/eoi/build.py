"""EOI's policy and learner from a config (construction order, which fixes the seeded initial
weights: agent network, mixer, as QMIX; then the classifier and Q^p)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bdps_agents.algorithms.building import (
    agent_inputs,
    fixed_sharing_groups,
    learner_kwargs,
    policy_kwargs,
)
from bdps_agents.algorithms.eoi import EOIOptions
from bdps_agents.algorithms.eoi.intrinsic import IdentityClassifier, IntrinsicQ
from bdps_agents.algorithms.eoi.learner import EOI
from bdps_agents.algorithms.eoi.policy import EOIPolicy
from bdps_agents.algorithms.mixers import build_mixer

if TYPE_CHECKING:
    from bdps_agents.config import ExperimentConfig


def build_eoi(cfg: ExperimentConfig, spec: Any) -> EOI:
    e: EOIOptions = cfg.section("eoi")
    inputs = agent_inputs(cfg, spec)
    common = policy_kwargs(cfg, spec, inputs, groups=fixed_sharing_groups(cfg, spec))
    # the mixer (algorithm.mixer, QMIX's by default) right after the agent network, as QMIX's
    # builder does, so that a seed gives QMIX's initial weights; EOI's models come after
    mixer = build_mixer(cfg, spec)
    policy = EOIPolicy(
        **common,
        classifier=IdentityClassifier(spec.obs_dim, spec.n_agents, e.hidden_dim),
        intrinsic_q=IntrinsicQ(spec.obs_dim, spec.n_agents, spec.n_actions, e.hidden_dim),
        episode_prob=e.episode_prob,
        explore_ratio=e.explore_ratio,
    )
    return EOI(
        policy=policy,
        mixer=mixer,
        classifier_lr=e.classifier_lr,
        intrinsic_lr=e.intrinsic_lr,
        entropy_weight=e.entropy_weight,
        reward_scale_intrinsic=e.reward_scale,
        reward_obs=e.reward_obs,
        intrinsic_gamma=e.intrinsic_gamma,
        target_tau=e.target_tau,
        minibatch=e.minibatch,
        max_minibatches=e.max_minibatches,
        **learner_kwargs(cfg),
    )
