"""RODE's policy and learner from a config."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

from bdps_agents.algorithms.building import agent_inputs, learner_kwargs, policy_kwargs, qmix_mixer
from bdps_agents.algorithms.mixers import build_mixer
from bdps_agents.algorithms.rode import RODEOptions
from bdps_agents.algorithms.rode.learner import RODE
from bdps_agents.algorithms.rode.policy import RODEPolicy
from bdps_agents.networks.rode import ActionRepresentation, RODEAgent, RODERoleSelector

if TYPE_CHECKING:
    from bdps_agents.config import ExperimentConfig


def build_rode_policy(cfg: ExperimentConfig, spec: Any) -> RODEPolicy:
    r: RODEOptions = cfg.section("rode")
    hidden, d = cfg.network.hidden_dim, r.action_embed_dim
    inputs = agent_inputs(cfg, spec)
    common = policy_kwargs(cfg, spec, inputs, groups=1)
    common["agent"] = RODEAgent(inputs.dim, spec.n_actions, hidden, r.n_roles, d)
    return RODEPolicy(
        **common,
        role_selector=RODERoleSelector(inputs.dim, hidden, d),
        action_repr=ActionRepresentation(
            spec.n_agents, spec.obs_dim, spec.n_actions, d, r.repr_hidden_dim
        ),
        role_interval=r.role_interval,
        role_eps_anneal_steps=r.role_eps_anneal_steps,
        role_eps_end=cfg.exploration.eps_end,
    )


def build_rode(cfg: ExperimentConfig, spec: Any) -> RODE:
    r: RODEOptions = cfg.section("rode")
    start_update = math.ceil(r.start_steps / cfg.training.steps_per_update)
    if r.start_steps >= cfg.training.total_steps:
        warnings.warn(
            f"rode.start_steps ({r.start_steps}) is not below training.total_steps "
            f"({cfg.training.total_steps}): RODE would never form its role action spaces (the "
            f"k-means runs after update {start_update}, i.e. rode.start_steps / "
            "training.steps_per_update gradient steps); lower rode.start_steps",
            stacklevel=2,
        )
    return RODE(
        policy=build_rode_policy(cfg, spec),
        mixer=build_mixer(cfg, spec),  # algorithm.mixer; the role mixer is QMIX's, as RODE's
        role_mixer=qmix_mixer(cfg, spec),
        start_update=start_update,
        noop_action=r.noop_action,
        move_actions=r.move_actions,
        move_threshold=r.move_threshold,
        reward_loss_weight=r.reward_loss_weight,
        repr_loss_weight=r.repr_loss_weight,
        role_loss_weight=r.role_loss_weight,
        seed=cfg.training.seed,
        **learner_kwargs(cfg),
    )
