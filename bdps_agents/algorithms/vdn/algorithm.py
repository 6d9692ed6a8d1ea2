"""VDN as a Tianshou algorithm, and its builder from a config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from bdps_agents.algorithms.building import (
    agent_inputs,
    fixed_sharing_groups,
    learner_kwargs,
    policy_kwargs,
)
from bdps_agents.algorithms.mixers import build_mixer
from bdps_agents.algorithms.value_decomposition import ValueDecomposition
from bdps_agents.config import ConfigError
from bdps_agents.networks.mixer import VDNMixer
from bdps_agents.policy import MultiAgentQPolicy

if TYPE_CHECKING:
    from bdps_agents.config import ExperimentConfig


class VDN(ValueDecomposition):
    """The shared learner with Q_tot = Σ_i Q_i (a :class:`~bdps_agents.networks.VDNMixer`
    unless ``mixer`` is given)."""

    def __init__(
        self, *, policy: MultiAgentQPolicy, mixer: nn.Module | None = None, **kwargs: Any
    ) -> None:
        super().__init__(policy=policy, mixer=mixer or VDNMixer(policy.n_agents), **kwargs)


def build_vdn(cfg: ExperimentConfig, spec: Any) -> VDN:
    mixer = cfg.algorithm.mixer
    if mixer not in (None, "vdn"):
        # a ConfigError: `bdps train` reports it as one error line
        raise ConfigError(
            f"algorithm.mixer={mixer}: VDN is the sum mixer; for the same learner with the "
            f"{mixer} mixer use --algo qmix --set algorithm.mixer={mixer}"
        )
    inputs = agent_inputs(cfg, spec)
    policy = MultiAgentQPolicy(**policy_kwargs(cfg, spec, inputs, fixed_sharing_groups(cfg, spec)))
    return VDN(policy=policy, mixer=build_mixer(cfg, spec, default="vdn"), **learner_kwargs(cfg))
