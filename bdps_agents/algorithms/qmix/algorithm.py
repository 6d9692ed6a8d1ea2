"""QMIX as a Tianshou algorithm, and its builder from a config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bdps_agents.algorithms.building import (
    agent_inputs,
    fixed_sharing_groups,
    learner_kwargs,
    policy_kwargs,
)
from bdps_agents.algorithms.mixers import build_mixer
from bdps_agents.algorithms.value_decomposition import ValueDecomposition
from bdps_agents.policy import MultiAgentQPolicy

if TYPE_CHECKING:
    from bdps_agents.config import ExperimentConfig


class QMIX(ValueDecomposition):
    """Recurrent QMIX: the shared learner with a :class:`~bdps_agents.networks.QMixer`
    (``mixer``); any mixer of ``(B, T, n)`` Q-values and ``(B, T, S)`` states fits
    (``algorithm.mixer``: ``qplex``, ``vdn``, ...)."""


def build_qmix(cfg: ExperimentConfig, spec: Any) -> QMIX:
    inputs = agent_inputs(cfg, spec)
    policy = MultiAgentQPolicy(**policy_kwargs(cfg, spec, inputs, fixed_sharing_groups(cfg, spec)))
    return QMIX(policy=policy, mixer=build_mixer(cfg, spec), **learner_kwargs(cfg))
