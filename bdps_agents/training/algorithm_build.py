"""The policy and the algorithm (QMIX or BDPS) that a config asks for, sized by an env."""

from __future__ import annotations

from tianshou.algorithm.optim import AdamOptimizerFactory

from bdps_agents.bdps import BDPS, BDPSPolicy, group_feature_dim
from bdps_agents.config import ExperimentConfig
from bdps_agents.env_spec import EnvSpec
from bdps_agents.networks import GroupSelector, RecurrentAgent, RoleSelector, make_mixer
from bdps_agents.policy import AgentInputs, MultiAgentQPolicy
from bdps_agents.qmix import QMIX


def build_policy(cfg: ExperimentConfig, spec: EnvSpec) -> MultiAgentQPolicy:
    """QMIX policy for ``full``/``none`` sharing, BDPS policy for ``individual``/``bilevel``."""
    net, b = cfg.network, cfg.bdps
    inputs = AgentInputs(
        spec.n_agents, spec.obs_dim, spec.n_actions, net.last_action_input, net.agent_id_input
    )
    groups = {"full": 1, "none": spec.n_agents}.get(net.sharing, b.n_roles)
    common = {
        "agent": RecurrentAgent(inputs.dim, spec.n_actions, net.hidden_dim, groups=groups),
        "inputs": inputs,
        "action_space": spec.action_space,
        "observation_space": spec.observation_space,
        "eps_training": cfg.exploration.eps_start,
        "eps_inference": cfg.exploration.eps_test,
        "seed": cfg.training.seed,
    }
    if not cfg.uses_selectors:
        return MultiAgentQPolicy(**common)
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
    group_interval: int | None = None
    if net.sharing == "bilevel":
        # group networks also read the role network's hidden state h^U (Sec. 3.2)
        group_agent = RecurrentAgent(
            inputs.dim + net.hidden_dim, spec.n_actions, net.hidden_dim, groups=b.n_groups
        )
        group_selector = GroupSelector(
            b.n_roles,
            b.n_groups,
            b.group_embed_dim,
            b.gat_dim,
            b.group_gru_dim,
            agent_feature_dim=group_feature_dim(
                b.group_selector_input, spec.n_agents, net.hidden_dim
            ),
        )
        group_interval = b.group_interval
    return BDPSPolicy(
        **common,
        role_selector=role_selector,
        role_interval=b.role_interval,
        sample_roles_at_test=b.sample_roles_at_test,
        group_input=b.group_selector_input,
        episode_limit=spec.episode_limit,
        group_agent=group_agent,
        group_selector=group_selector,
        group_interval=group_interval,
    )


def build_algorithm(cfg: ExperimentConfig, spec: EnvSpec) -> QMIX:
    """QMIX (``full``/``none``) or BDPS (``individual``/``bilevel``) with its policy."""
    cfg.check_env(spec.n_agents, spec.episode_limit)
    net, alg = cfg.network, cfg.algorithm
    policy = build_policy(cfg, spec)

    def mixer():
        return make_mixer(
            net.mixer, spec.n_agents, spec.state_dim, net.mixing_embed_dim, net.hypernet_hidden_dim
        )

    common = {
        "policy": policy,
        "mixer": mixer(),
        "optim": AdamOptimizerFactory(lr=alg.lr),
        "gamma": alg.gamma,
        "td_lambda": alg.td_lambda,
        "double_q": alg.double_q,
        "target_update_interval": alg.target_update_interval,
        "max_grad_norm": alg.max_grad_norm,
        "reward_scale": alg.reward_scale,
    }
    if not cfg.uses_selectors:
        return QMIX(**common)
    b = cfg.bdps
    return BDPS(
        **common,
        group_mixer=mixer() if net.sharing == "bilevel" else None,
        kl_weight=b.kl_weight,
        role_loss_weight=b.role_loss_weight,
        group_loss_weight=b.group_loss_weight,
    )
