"""VDN (Sunehag et al. 2018): recurrent agents whose chosen Q-values are summed,
Q_tot = Σ_i Q_i (no state, no mixing weights); one network for all agents (``network.sharing:
full``) or one per agent (``none``)."""

from __future__ import annotations

from bdps_agents.algorithms import AlgorithmOptions, AlgorithmSpec


class VDNOptions(AlgorithmOptions):
    """VDN has no settings of its own: the ``network`` and ``algorithm`` sections hold them."""


SPEC = AlgorithmSpec(
    name="vdn",
    summary="VDN: Q_tot = sum of the agents' Q-values; shares full (default) or none",
    options=VDNOptions,
    build="bdps_agents.algorithms.vdn.algorithm:build_vdn",
    sharing=("full", "none"),
    default_mixer="vdn",
)
