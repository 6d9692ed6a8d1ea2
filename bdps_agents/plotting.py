"""Figures and a summary table from an experiment's ``results.csv``
(:mod:`bdps_agents.results` reads it; :mod:`bdps_agents.figures` draws).

Learning curves of the test metrics are drawn here; each registered algorithm adds the figures
and table columns of its own diagnostics (``AlgorithmSpec.plots``, ``summary_metrics``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bdps_agents.algorithms import (
    AlgorithmLoadError,
    AlgorithmSpec,
    algorithm_spec,
    available_algorithms,
)
from bdps_agents.figures import curve_figure
from bdps_agents.results import Results, load_results, mean_ci

__all__ = ["LATE_FRACTION", "TEST_METRICS", "plot_results", "summary_table"]

#: Test-episode metrics drawn as learning curves: name -> (file, y-axis label).
TEST_METRICS: dict[str, tuple[str, str]] = {
    "greedy_return": ("returns.png", "test return"),
    "win_rate": ("win_rate.png", "test win rate"),
    "goal_score": ("goal_score.png", "test episodes with a goal (fraction)"),
    "food_collected": ("food_collected.png", "test food collected (fraction)"),
    # role-based methods: greedy play's assignments, and the selector value (chosen − random,
    # paired on env seeds; logged with training.selector_value_episodes > 0)
    "roles_per_env": ("greedy_roles_per_env.png", "roles per env (greedy)"),
    "groups_per_env": ("greedy_groups_per_env.png", "groups per env (greedy)"),
    "role_value": ("role_value.png", "role value (return, chosen − random)"),
    "group_value": ("group_value.png", "group value (return, chosen − random)"),
    "group_value_random_team": ("group_value_team.png", "group value (chosen − random team)"),
    "group_value_random_partition": (
        "group_value_partition.png",
        "group value (chosen − random partition)",
    ),
}


def _algorithm_specs() -> list[AlgorithmSpec]:
    """Every registered algorithm that loads (a broken plug-in is named, not fatal here)."""
    specs = []
    for name in available_algorithms():
        try:
            specs.append(algorithm_spec(name))
        except AlgorithmLoadError as err:
            warnings.warn(f"its figures are skipped: {err}", stacklevel=3)
    return specs


# ----------------------------------------------------------------------------- figures
def plot_results(
    results_dir: str | Path, out_dir: str | Path | None = None, max_step: float | None = None
) -> list[Path]:
    """Write the experiment's figures as PNGs; returns their paths (figures whose metric is
    absent are skipped). ``max_step``: as in :func:`load_results`.

    ``returns.png`` (and ``win_rate.png``, ``goal_score.png``, ``food_collected.png`` when
    logged): test curves, one panel per scenario, one line per method (mean across seeds with a
    95% CI band). Then every registered algorithm's own figures of its diagnostics
    (``AlgorithmSpec.plots``; BDPS: ΔH, information diagnostics, role and group shares).
    """
    results = load_results(results_dir, max_step)
    out = Path(out_dir) if out_dir is not None else results.path.parent / "plots"
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Figure | None]] = [
        (filename, curve_figure(results, f"test/{name}", ylabel))
        for name, (filename, ylabel) in TEST_METRICS.items()
    ]
    for spec in _algorithm_specs():
        plotter = spec.plotter()
        if plotter is not None:
            figures += plotter(results)
    written = []
    for filename, fig in figures:
        if fig is not None:
            fig.savefig(out / filename, dpi=110)
            written.append(out / filename)
    return written


# ----------------------------------------------------------------------------- table
def _final_values(results: Results, scenario: str, method: str, name: str) -> np.ndarray:
    """Per seed: the ``final/<name>`` value, else the last ``test/<name>`` value."""
    final = results.runs(scenario, method, f"final/{name}")
    test = results.runs(scenario, method, f"test/{name}")
    values = [
        (final[seed] if seed in final else test[seed]).values[-1]
        for seed in sorted(set(final) | set(test))
    ]
    return np.array(values, dtype=float)


#: Algorithms' diagnostics (``AlgorithmSpec.summary_metrics``) in the summary table are averaged
#: over the last LATE_FRACTION of each run's update rows (single update rows are noisy).
LATE_FRACTION = 0.1


def summary_table(results: Results, confidence: float = 0.95) -> str:
    """Markdown table: per scenario × method the final mean ± CI half-width across seeds of the
    test return (``final/greedy_return``, else the last test value) and of each other test
    metric present (win rate, goal score, food collected), then the algorithms' diagnostics
    (``AlgorithmSpec.summary_metrics``, e.g. BDPS's information diagnostics) over the last 10%
    of training."""
    names = [
        name
        for name in TEST_METRICS
        if any(m in results.metrics for m in (f"final/{name}", f"test/{name}"))
    ]
    summary = [name for spec in _algorithm_specs() for name in spec.summary_metrics]
    updates = [name for name in dict.fromkeys(summary) if f"update/{name}" in results.metrics]
    labels = [TEST_METRICS[name][1] for name in names]
    labels += [f"{name} (last {LATE_FRACTION:.0%})" for name in updates]
    pct = round(confidence * 100)
    lines = [
        "| scenario | method | seeds | " + " | ".join(labels) + " |",
        "|---|---|---|" + "---|" * len(labels),
    ]
    for scenario in results.scenarios:
        for method in results.methods:
            seeds = results.seeds(scenario, method)
            if not seeds:
                continue
            cells = [_cell(_final_values(results, scenario, method, n), confidence) for n in names]
            cells += [
                _cell(_late_values(results, scenario, method, f"update/{n}"), confidence)
                for n in updates
            ]
            lines.append(f"| {scenario} | {method} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nmean ± {pct}% Student-t confidence half-width across seeds\n"


def _late_values(results: Results, scenario: str, method: str, metric: str) -> np.ndarray:
    """Per seed, the mean of ``metric`` over the last ``LATE_FRACTION`` of its steps."""
    values = []
    for series in results.runs(scenario, method, metric).values():
        start = series.steps.max() - LATE_FRACTION * (series.steps.max() - series.steps.min())
        values.append(series.values[series.steps >= start].mean())
    return np.asarray(values)


def _cell(values: np.ndarray, confidence: float) -> str:
    if values.size == 0:
        return "–"
    mean, _low, high = mean_ci(values, confidence)
    if values.size == 1:
        return f"{float(mean):.3f}"
    return f"{float(mean):.3f} ± {float(high - mean):.3f}"
