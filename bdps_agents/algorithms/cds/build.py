"""CDS's policy and learner from a config (construction order, which fixes the seeded initial
weights: agent network and local heads, mixer, predictors)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from bdps_agents.algorithms.building import learner_kwargs, policy_kwargs
from bdps_agents.algorithms.cds import CDSOptions
from bdps_agents.algorithms.cds.learner import CDS
from bdps_agents.algorithms.cds.policy import CDSPolicy
from bdps_agents.algorithms.mixers import build_mixer
from bdps_agents.networks.cds import CDSAgent, CDSPredictors
from bdps_agents.policy import AgentInputs

if TYPE_CHECKING:
    from bdps_agents.config import ExperimentConfig


def cds_agent_inputs(cfg: ExperimentConfig, spec: Any) -> AgentInputs:
    """Observation [‖ last action] [‖ agent id]; ``cds.agent_id_input`` overrides the network's."""
    c: CDSOptions = cfg.section("cds")
    net = cfg.network
    agent_id = net.agent_id_input if c.agent_id_input is None else c.agent_id_input
    return AgentInputs(spec.n_agents, spec.obs_dim, spec.n_actions, net.last_action_input, agent_id)


def build_cds_policy(cfg: ExperimentConfig, spec: Any) -> CDSPolicy:
    inputs = cds_agent_inputs(cfg, spec)
    common = policy_kwargs(cfg, spec, inputs, groups=1)
    common["agent"] = CDSAgent(inputs.dim, spec.n_actions, cfg.network.hidden_dim, spec.n_agents)
    return CDSPolicy(**common)


def build_cds(cfg: ExperimentConfig, spec: Any) -> CDS:
    c: CDSOptions = cfg.section("cds")
    policy = build_cds_policy(cfg, spec)
    # algorithm.mixer, else cds.mixer (the GRF presets: qmix), else QPLEX
    mixer = build_mixer(cfg, spec, default=c.mixer or "qplex")
    predictors = CDSPredictors(
        cfg.network.hidden_dim, spec.obs_dim, spec.n_actions, spec.n_agents, c.predictor_hidden
    )
    per_update = cfg.training.steps_per_update
    anneal_start = c.anneal_start_steps
    return CDS(
        policy=policy,
        mixer=mixer,
        predictors=predictors,
        beta1=c.beta1,
        beta2=c.beta2,
        beta=c.beta,
        kl_scale=c.kl_scale,
        l1_weight=c.l1_weight,
        predictor_lr=c.predictor_lr,
        predictor_grad_clip=c.predictor_grad_clip,
        predictor_minibatch=c.predictor_minibatch,
        predictor_epochs=c.predictor_epochs,
        predictor_max_steps=c.predictor_max_steps,
        anneal_start_update=None if anneal_start is None else math.ceil(anneal_start / per_update),
        anneal_updates=math.ceil(c.anneal_steps / per_update),
        reference_intrinsic=c.reference_intrinsic,
        **learner_kwargs(cfg),
    )
