"""BDPS's policy and learner from a config (the order of construction fixes the seeded
initial weights: role networks, role selector, group networks, group selector, mixers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bdps_agents.algorithms.bdps.config import BDPSConfig
from bdps_agents.algorithms.bdps.learner import BDPS
from bdps_agents.algorithms.bdps.policy import BDPSPolicy, group_feature_dim
from bdps_agents.algorithms.building import agent_inputs, learner_kwargs, policy_kwargs, qmix_mixer
from bdps_agents.algorithms.mixers import build_mixer
from bdps_agents.networks import GroupSelector, RecurrentAgent, RoleSelector

if TYPE_CHECKING:
    from bdps_agents.config import ExperimentConfig


def build_bdps_policy(cfg: ExperimentConfig, spec: Any) -> BDPSPolicy:
    b: BDPSConfig = cfg.section("bdps")
    hidden = cfg.network.hidden_dim
    inputs = agent_inputs(cfg, spec)
    common = policy_kwargs(cfg, spec, inputs, groups=b.n_roles)  # k role networks
    role_selector = RoleSelector(
        spec.n_actions,
        b.n_roles,
        b.role_interval,
        b.role_gru_dim,
        b.vae_hidden_dim,
        standardize=b.standardize_advantages,
    )
    group_agent: RecurrentAgent | None = None
    group_selector: GroupSelector | None = None
    if b.bilevel:
        # group networks also read the role network's hidden state h^U (Sec. 3.2)
        group_agent = RecurrentAgent(inputs.dim + hidden, spec.n_actions, hidden, groups=b.n_groups)
        group_selector = GroupSelector(
            b.n_roles,
            b.n_groups,
            b.group_embed_dim,
            b.gat_dim,
            b.group_gru_dim,
            agent_feature_dim=group_feature_dim(b.group_selector_input, spec.n_agents, hidden),
        )
    return BDPSPolicy(
        **common,
        role_selector=role_selector,
        role_interval=b.role_interval,
        sample_roles_at_test=b.sample_roles_at_test,
        group_input=b.group_selector_input,
        group_choice=b.group_choice,
        role_switch_margin=b.role_switch_margin,
        episode_limit=spec.episode_limit,
        group_agent=group_agent,
        group_selector=group_selector,
        group_interval=b.group_interval if b.bilevel else None,
    )


def build_bdps(cfg: ExperimentConfig, spec: Any) -> BDPS:
    b: BDPSConfig = cfg.section("bdps")
    policy = build_bdps_policy(cfg, spec)
    return BDPS(
        policy=policy,
        mixer=build_mixer(cfg, spec),  # algorithm.mixer; QMIX by default, as the paper
        group_mixer=qmix_mixer(cfg, spec) if b.bilevel else None,  # QMIX always (Eq. 8)
        kl_weight=b.kl_weight,
        role_loss_weight=b.role_loss_weight,
        group_loss_weight=b.group_loss_weight,
        **learner_kwargs(cfg),
    )
