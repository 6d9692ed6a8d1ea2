"""SePS's policy and learner from a config (construction order, which fixes the seeded initial
weights: agent networks, VAE, mixer)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from bdps_agents.algorithms.building import agent_inputs, learner_kwargs, policy_kwargs
from bdps_agents.algorithms.mixers import build_mixer
from bdps_agents.algorithms.seps import SEPSOptions
from bdps_agents.algorithms.seps.learner import SePS
from bdps_agents.algorithms.seps.policy import SePSPolicy
from bdps_agents.algorithms.seps.vae import AgentVAE

if TYPE_CHECKING:
    from bdps_agents.config import ExperimentConfig


def build_seps_policy(cfg: ExperimentConfig, spec: Any) -> SePSPolicy:
    s: SEPSOptions = cfg.section("seps")
    inputs = agent_inputs(cfg, spec)
    common = policy_kwargs(cfg, spec, inputs, groups=s.n_networks(spec.n_agents))
    vae = AgentVAE(
        spec.n_agents,
        spec.obs_dim,
        spec.n_actions,
        s.latent_dim,
        s.encoder_hidden,
        s.decoder_hidden,
    )
    return SePSPolicy(**common, vae=vae)


def build_seps(cfg: ExperimentConfig, spec: Any) -> SePS:
    s: SEPSOptions = cfg.section("seps")
    policy = build_seps_policy(cfg, spec)
    return SePS(
        policy=policy,
        mixer=build_mixer(cfg, spec),  # algorithm.mixer (QMIX's by default)
        pretrain_updates=math.ceil(s.pretrain_steps / cfg.training.steps_per_update),
        n_clusters=s.n_clusters,
        max_clusters=None if s.n_clusters is not None else policy.n_networks,
        kl_weight=s.kl_weight,
        vae_loss_weight=s.vae_loss_weight,
        vae_max_tuples=s.vae_max_tuples,
        **learner_kwargs(cfg),
    )
