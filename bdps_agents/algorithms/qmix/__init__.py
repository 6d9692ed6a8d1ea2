"""QMIX (Rashid et al. 2018): recurrent agents whose chosen Q-values a monotonic,
state-conditioned mixer combines; one network for all agents (``network.sharing: full``, the
paper's "QMIX full") or one per agent (``none``). ``algorithm.mixer`` swaps the mixer (QPLEX,
VDN's sum, a registered one)."""

from __future__ import annotations

from bdps_agents.algorithms import AlgorithmOptions, AlgorithmSpec


class QMIXOptions(AlgorithmOptions):
    """QMIX has no settings of its own: the ``network`` and ``algorithm`` sections hold them."""


SPEC = AlgorithmSpec(
    name="qmix",
    summary="QMIX: monotonic mixing of recurrent agents; shares full (default) or none",
    options=QMIXOptions,
    build="bdps_agents.algorithms.qmix.algorithm:build_qmix",
    sharing=("full", "none"),
    # QMIX's learner with another registered mixer (run names qmix-qplex, qmix-vdn)
    variants={"qplex": {"algorithm.mixer": "qplex"}, "vdn": {"algorithm.mixer": "vdn"}},
)
