"""Pieces every registered algorithm's builder uses: agent inputs, the policy's and the
learner's common arguments from the config, the built-in mixers' builders (registered by name
in :mod:`bdps_agents.algorithms.mixers`; algorithms call ``build_mixer``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bdps_agents.algorithms.optim import FusedAdamOptimizerFactory
from bdps_agents.networks.agent import RecurrentAgent
from bdps_agents.networks.mixer import QMixer, VDNMixer
from bdps_agents.networks.qplex import QPLEXMixer
from bdps_agents.policy import AgentInputs

if TYPE_CHECKING:
    from bdps_agents.config import ExperimentConfig


def agent_inputs(cfg: ExperimentConfig, spec: Any) -> AgentInputs:
    """What an agent network reads per step: observation [‖ last action] [‖ agent id]."""
    net = cfg.network
    return AgentInputs(
        spec.n_agents, spec.obs_dim, spec.n_actions, net.last_action_input, net.agent_id_input
    )


def fixed_sharing_groups(cfg: ExperimentConfig, spec: Any) -> int:
    """Agent networks of ``network.sharing`` full (one) or none (one per agent)."""
    if cfg.network.sharing not in ("full", "none"):
        raise ValueError(f"network.sharing={cfg.network.sharing} is not full or none")
    return 1 if cfg.network.sharing == "full" else spec.n_agents


def policy_kwargs(cfg: ExperimentConfig, spec: Any, inputs: AgentInputs, groups: int) -> dict:
    """``MultiAgentQPolicy`` arguments: a recurrent agent of ``groups`` stacked networks,
    the env's spaces, the ε of acting and testing, the seed."""
    return {
        "agent": RecurrentAgent(inputs.dim, spec.n_actions, cfg.network.hidden_dim, groups=groups),
        "inputs": inputs,
        "action_space": spec.action_space,
        "observation_space": spec.observation_space,
        "eps_training": cfg.exploration.eps_start,
        "eps_inference": cfg.exploration.eps_test,
        "seed": cfg.training.seed,
    }


def learner_kwargs(cfg: ExperimentConfig) -> dict[str, Any]:
    """``ValueDecomposition`` arguments of the ``algorithm`` section (all but policy, mixer)."""
    alg = cfg.algorithm
    return {
        "optim": FusedAdamOptimizerFactory(lr=alg.lr),
        "gamma": alg.gamma,
        "td_lambda": alg.td_lambda,
        "double_q": alg.double_q,
        "target_update_interval": alg.target_update_interval,
        "max_grad_norm": alg.max_grad_norm,
        "reward_scale": alg.reward_scale,
    }


def qmix_mixer(cfg: ExperimentConfig, spec: Any) -> QMixer:
    net = cfg.network
    return QMixer(spec.n_agents, spec.state_dim, net.mixing_embed_dim, net.hypernet_hidden_dim)


def vdn_mixer(cfg: ExperimentConfig, spec: Any) -> VDNMixer:
    return VDNMixer(spec.n_agents)


def qplex_mixer(cfg: ExperimentConfig, spec: Any) -> QPLEXMixer:
    net = cfg.network
    return QPLEXMixer(
        spec.n_agents,
        spec.state_dim,
        spec.n_actions,
        embed_dim=net.mixing_embed_dim,
        hypernet_dim=net.hypernet_hidden_dim,
        heads=net.qplex_heads,
        kernels=net.qplex_kernels,
    )
