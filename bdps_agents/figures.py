"""Figures of experiment results on bare ``matplotlib.figure.Figure`` objects (no pyplot: no
global backend switch, no figure left open): learning curves and update statistics, mean ± 95%
CI across seeds, one panel per scenario, one colour per method."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from bdps_agents.results import UPDATE_BINS, Results, curves, mean_ci


def new_figure(
    nrows: int, ncols: int, width: float = 4.8, height: float = 3.6
) -> tuple[Figure, np.ndarray]:
    """A Figure (Agg canvas) and its ``(nrows, ncols)`` array of axes."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def steps_axis(ax: Any) -> None:
    """x axis in env steps, ticks as 50k, 1M (full numbers overlap)."""
    ax.set_xlabel("env steps")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))


def panels(n: int, max_cols: int = 3) -> tuple[Figure, list[Any]]:
    """A figure with ``n`` panels in rows of at most ``max_cols``; unused axes hidden."""
    ncols = min(n, max_cols)
    nrows = -(-n // ncols)
    fig, axes = new_figure(nrows, ncols)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def method_color(results: Results, method: str) -> str:
    """One colour per method, the same in every panel and figure."""
    return f"C{results.methods.index(method) % 10}"


def curve_figure(
    results: Results, metric: str, ylabel: str, bins: int | None = None
) -> Figure | None:
    """Mean ± 95% CI of ``metric`` per method, one panel per scenario (None if never logged)."""
    cells = {
        scenario: [m for m in results.methods if results.runs(scenario, m, metric)]
        for scenario in results.scenarios
    }
    cells = {scenario: methods for scenario, methods in cells.items() if methods}
    if not cells:
        return None
    fig, axes = panels(len(cells))
    for ax, (scenario, methods) in zip(axes, cells.items(), strict=True):
        for method in methods:
            steps, values = curves(results, metric, scenario, method, bins=bins)
            mean, low, high = mean_ci(values)
            color = method_color(results, method)
            n = len(values)
            ax.plot(steps, mean, color=color, label=f"{method} ({n} seed{'s' * (n > 1)})")
            ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
        ax.set_title(scenario)
        steps_axis(ax)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    return fig


def update_figure(results: Results, metric: str, ylabel: str, reference: float) -> Figure | None:
    """An update statistic over training (binned update rows), with a dashed reference line
    (e.g. the paper's Fig. 6: ΔH = H(team level) − H(individual level) against 0)."""
    fig = curve_figure(results, metric, ylabel, bins=UPDATE_BINS)
    if fig is not None:
        for ax in fig.axes:
            if ax.get_visible():
                ax.axhline(reference, color="0.4", linewidth=0.8, linestyle="--")
    return fig
