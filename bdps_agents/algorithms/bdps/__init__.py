"""BDPS, bi-level dynamic parameter sharing (the paper): agents re-assigned to k roles every
T_U steps (role selector: GRU + VAE over advantage windows) and to m groups every T_V steps
(group selector: MLP -> GAT -> GRU, an extra RL task); Q = Q^U + Q^V mixed by QMIX.

Here: ``config`` (the ``bdps:`` section, Def. 1), ``policy`` (acting), ``learner`` (the losses
added to the shared learner), ``diagnostics``, ``plots``, ``build`` and ``presets`` (the paper's
Table 2 / App. G settings per scenario preset)."""

from __future__ import annotations

from bdps_agents.algorithms import AlgorithmSpec
from bdps_agents.algorithms.bdps.config import BDPSConfig

SPEC = AlgorithmSpec(
    name="bdps",
    summary="BDPS: agents share networks by dynamic role (k) and group (m); bdps.levels=1 "
    "for roles only",
    options=BDPSConfig,
    build="bdps_agents.algorithms.bdps.build:build_bdps",
    sharing=("roles",),
    plots="bdps_agents.algorithms.bdps.plots:plot_bdps_diagnostics",
    summary_metrics=("role_recon_ratio", "roles_per_env", "groups_per_env"),
    variants={"individual": {"bdps.levels": 1}},  # the paper's single-level ablation
    presets="bdps_agents.algorithms.bdps.presets",
)
