"""BDPS's figures for ``bdps plot``: its update diagnostics over training (ΔH, Eq. 10, the
paper's Fig. 6; whether roles and groups carry information, against the no-information value)
and the share of agents in each role / group."""

from __future__ import annotations

import re
from typing import Any

from matplotlib.figure import Figure

from bdps_agents.figures import new_figure, steps_axis, update_figure
from bdps_agents.results import UPDATE_BINS, Results, curves

#: update diagnostics drawn over training: name -> (file, y-axis label, the value that
#: no information / no effect gives, drawn dashed).
UPDATE_METRICS: dict[str, tuple[str, str, float]] = {
    "delta_h": ("delta_h.png", "ΔH (team − individual entropy)", 0.0),
    "role_recon_ratio": ("role_recon_ratio.png", "role reconstruction ratio (1: no info)", 1.0),
    "roles_per_env": ("roles_per_env.png", "distinct roles per env (1: one network)", 1.0),
    "groups_per_env": ("groups_per_env.png", "distinct groups per env (1: one network)", 1.0),
}
# role/group shares; the trainer logs them as "update/assignments/role_0_frac"
_ASSIGNMENT_RE = re.compile(r"update/(?:assignments/)?(role|group)_(\d+)_frac")


def plot_bdps_diagnostics(results: Results) -> list[tuple[str, Figure | None]]:
    """``delta_h.png``: the team-minus-individual entropy difference (the paper's Fig. 6);
    ``role_recon_ratio.png``, ``roles_per_env.png``, ``groups_per_env.png``: whether roles and
    groups carry information (dashed: the no-information value); ``roles.png`` / ``groups.png``:
    the share of agents in each role / group over training, one panel per scenario (rows) and
    method (columns). None where the metric was never logged."""
    figures: list[tuple[str, Figure | None]] = [
        (filename, update_figure(results, f"update/{name}", ylabel, reference))
        for name, (filename, ylabel, reference) in UPDATE_METRICS.items()
    ]
    figures.append(("roles.png", _assignment_figure(results, "role")))
    figures.append(("groups.png", _assignment_figure(results, "group")))
    return figures


def _assignment_metrics(results: Results, kind: str) -> dict[tuple[str, str], list[str]]:
    """``{(scenario, method): [kind_0 metric, kind_1 metric, ...]}`` for runs that logged them."""
    found: dict[tuple[str, str], dict[int, str]] = {}
    for scenario, method, metric in results.series:
        match = _ASSIGNMENT_RE.fullmatch(metric)
        if match and match[1] == kind:
            found.setdefault((scenario, method), {})[int(match[2])] = metric
    return {key: [names[i] for i in sorted(names)] for key, names in found.items()}


def _assignment_figure(results: Results, kind: str) -> Figure | None:
    """Stacked shares of agents per role (or group): scenarios in rows, methods in columns."""
    cells = _assignment_metrics(results, kind)
    if not cells:
        return None
    scenarios = [s for s in results.scenarios if any(key[0] == s for key in cells)]
    methods = [m for m in results.methods if any(key[1] == m for key in cells)]
    fig, axes = new_figure(len(scenarios), len(methods), height=3.2)
    for row, scenario in enumerate(scenarios):
        for col, method in enumerate(methods):
            ax = axes[row, col]
            if (scenario, method) not in cells:
                ax.set_visible(False)
                continue
            _draw_shares(ax, results, cells[scenario, method], scenario, method, kind)
    return fig


def _draw_shares(
    ax: Any, results: Results, metrics: list[str], scenario: str, method: str, kind: str
) -> None:
    """One stacked-area panel: mean share (across seeds) of each role/group over env steps."""
    # every share on the first one's grid, so that the stacked areas line up
    steps, first = curves(results, metrics[0], scenario, method, bins=UPDATE_BINS)
    means = [first.mean(axis=0)]
    for metric in metrics[1:]:
        _, values = curves(results, metric, scenario, method, steps, bins=UPDATE_BINS)
        means.append(values.mean(axis=0))
    ax.stackplot(steps, *means, labels=[f"{kind} {i}" for i in range(len(means))], alpha=0.85)
    n = len(first)
    ax.set_title(f"{scenario} – {method} ({n} seed{'s' * (n > 1)})", fontsize="medium")
    steps_axis(ax)
    ax.set_ylabel(f"share of agents per {kind}")
    ax.set_ylim(0.0, 1.0)
    ax.margins(x=0)
    ax.legend(loc="upper right", fontsize="small")
