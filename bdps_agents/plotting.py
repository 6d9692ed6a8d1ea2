"""Figures and a summary table from an experiment's ``results.csv``.

``results.csv`` (written by :mod:`bdps_agents.experiment`) is a tidy table with the columns
``run_id, scenario, method, seed, env_step, metric, value``; ``metric`` is ``"<scope>/<name>"``
(``test/greedy_return``, ``test/win_rate``, ``update/delta_h``, ``final/greedy_return``, ...).
One run is one (scenario, method, seed).

Curves across seeds: every seed's series is interpolated (linearly) onto a common grid of env
steps inside the range that all seeds cover (evaluation steps differ slightly between seeds,
because the warm-up lengths differ, and runs may have different lengths); the band is the 95%
Student-t confidence interval of the mean across seeds (:func:`mean_ci`). Update rows (one per
logged gradient step) are first averaged into about 100 bins per run.

Figures are drawn on bare ``matplotlib.figure.Figure`` objects (no pyplot): no global backend
switch, no figure left open. Nothing here needs pandas or scipy.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from bdps_agents.config import ResultsError

__all__ = [
    "RESULTS_COLUMNS",
    "TEST_METRICS",
    "Results",
    "Series",
    "bin_series",
    "curves",
    "load_results",
    "mean_ci",
    "plot_results",
    "summary_table",
    "t_cdf",
    "t_quantile",
]

RESULTS_COLUMNS = ("run_id", "scenario", "method", "seed", "env_step", "metric", "value")

#: Test-episode metrics drawn as learning curves: name -> (file, y-axis label).
TEST_METRICS: dict[str, tuple[str, str]] = {
    "greedy_return": ("returns.png", "test return"),
    "win_rate": ("win_rate.png", "test win rate"),
    "goal_score": ("goal_score.png", "test episodes with a goal (fraction)"),
    "food_collected": ("food_collected.png", "test food collected (fraction)"),
}

#: BDPS's update diagnostics drawn over training: name -> (file, y-axis label, the value that
#: no information / no effect gives, drawn dashed).
UPDATE_METRICS: dict[str, tuple[str, str, float]] = {
    "delta_h": ("delta_h.png", "ΔH (team − individual entropy)", 0.0),
    "role_recon_ratio": ("role_recon_ratio.png", "role reconstruction ratio (1: no info)", 1.0),
    "roles_per_env": ("roles_per_env.png", "distinct roles per env (1: one network)", 1.0),
    "groups_per_env": ("groups_per_env.png", "distinct groups per env (1: one network)", 1.0),
}
#: Points per run that dense update rows are averaged into before seeds are combined.
UPDATE_BINS = 100
# role/group shares; the trainer logs them as "update/assignments/role_0_frac"
_ASSIGNMENT_RE = re.compile(r"update/(?:assignments/)?(role|group)_(\d+)_frac")


# ----------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class Series:
    """One run's values of one metric, sorted by env step (one value per step)."""

    steps: np.ndarray
    values: np.ndarray


@dataclass
class Results:
    """``results.csv`` grouped as ``{(scenario, method, metric): {seed: Series}}``.

    ``scenarios`` and ``methods`` keep the order of first appearance in the file (the grid's
    order), which fixes panel order and method colours.
    """

    path: Path
    series: dict[tuple[str, str, str], dict[int, Series]]
    scenarios: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)

    def runs(self, scenario: str, method: str, metric: str) -> dict[int, Series]:
        """``{seed: Series}`` of one metric of one (scenario, method); empty if absent."""
        return self.series.get((scenario, method, metric), {})

    @property
    def metrics(self) -> list[str]:
        """Every metric name in the file, sorted."""
        return sorted({metric for _, _, metric in self.series})

    def seeds(self, scenario: str, method: str) -> list[int]:
        """Seeds with any row for (scenario, method)."""
        found = {
            seed
            for (s, m, _), runs in self.series.items()
            if (s, m) == (scenario, method)
            for seed in runs
        }
        return sorted(found)


def load_results(results_dir: str | Path, max_step: float | None = None) -> Results:
    """Read ``results_dir/results.csv`` (or a CSV path given directly).

    ``max_step``: ignore rows logged after this env step, to compare runs trained for different
    budgets at a common one (the ``final/`` values of a longer run then drop out and its last
    test before ``max_step`` stands in for them).

    Raises ``FileNotFoundError`` when the file is absent and :class:`ResultsError` naming the
    file (and the line and column) when a column is missing or a value is not a number, and when
    it holds no rows. When a run logged the same metric twice at one step (e.g. resumed), the
    later row wins.
    """
    if max_step is not None and not (math.isfinite(max_step) and max_step >= 0):
        raise ResultsError(f"max_step must be a finite number >= 0, got {max_step}")
    path = Path(results_dir)
    if path.is_dir() or path.suffix != ".csv":
        path = path / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    raw: dict[tuple[str, str, str], dict[int, dict[float, float]]] = {}
    scenarios: dict[str, None] = {}  # dicts keep first-appearance order
    methods: dict[str, None] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in RESULTS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ResultsError(
                f"{path}: missing column(s) {', '.join(map(repr, missing))}; expected the header "
                f"{','.join(RESULTS_COLUMNS)}"
            )
        for row in reader:
            line = reader.line_num
            seed = int(_number(row, "seed", path, line))
            step = _number(row, "env_step", path, line)
            value = _number(row, "value", path, line)
            if max_step is not None and step > max_step:
                continue
            key = (row["scenario"], row["method"], row["metric"])
            raw.setdefault(key, {}).setdefault(seed, {})[step] = value
            scenarios[row["scenario"]] = None
            methods[row["method"]] = None
    if not raw:
        after = f" up to env step {max_step:g}" if max_step is not None else ""
        raise ResultsError(
            f"{path} holds no results{after}: no run of the experiment has logged a test yet"
        )
    series = {
        key: {seed: _series(points) for seed, points in sorted(by_seed.items())}
        for key, by_seed in raw.items()
    }
    return Results(path, series, list(scenarios), list(methods))


def _number(row: dict[str, str | None], column: str, path: Path, line: int) -> float:
    text = row.get(column)
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ResultsError(
            f"{path}, line {line}: column {column!r} must be a number, got {text!r}"
        ) from None


def _series(points: dict[float, float]) -> Series:
    steps = np.array(sorted(points), dtype=float)
    return Series(steps, np.array([points[s] for s in steps], dtype=float))


# ----------------------------------------------------------------------------- statistics
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        # even step, then odd step of the fraction (Abramowitz & Stegun 26.5.8)
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return h


def _reg_inc_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # the fraction converges fast only below its mean; use the symmetry I_x(a,b) = 1 - I_1-x(b,a)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t distribution with ``df`` degrees of freedom."""
    tail = 0.5 * _reg_inc_beta(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse CDF of Student's t (bisection on :func:`t_cdf`; accurate to ~1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:  # symmetric
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:  # bracket the root: df=1 tails are very heavy
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def mean_ci(
    values: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean across seeds (axis 0) and its two-sided Student-t confidence interval.

    ``mean ± t_{(1+confidence)/2, n-1} * std(ddof=1) / sqrt(n)``. With a single seed the interval
    collapses to the mean (no NaN).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    v = np.asarray(values, dtype=float)
    n = v.shape[0] if v.ndim else 0
    if n == 0:
        raise ValueError("mean_ci needs at least one value along axis 0")
    mean = v.mean(axis=0)
    if n == 1:
        return mean, mean.copy(), mean.copy()
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * v.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


# ----------------------------------------------------------------------------- curves
def bin_series(series: Series, n_bins: int = UPDATE_BINS) -> Series:
    """Average a dense series into ``n_bins`` equal-width step bins (empty bins are dropped);
    each bin sits at the mean step of its points. Short series are returned unchanged."""
    if len(series.steps) <= n_bins:
        return series
    edges = np.linspace(series.steps[0], series.steps[-1], n_bins + 1)
    idx = np.clip(np.searchsorted(edges, series.steps, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    keep = counts > 0
    steps = np.bincount(idx, weights=series.steps, minlength=n_bins)[keep] / counts[keep]
    values = np.bincount(idx, weights=series.values, minlength=n_bins)[keep] / counts[keep]
    return Series(steps, values)


def curves(
    results: Results,
    metric: str,
    scenario: str,
    method: str,
    grid_points: int | np.ndarray | None = None,
    *,
    bins: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Every seed's ``metric`` on a common step grid: ``(steps (T,), values (n_seeds, T))``.

    The grid spans the range that all seeds cover (latest first step to earliest last step),
    with ``grid_points`` evenly spaced points (default: as many as the shortest run has); an
    array ``grid_points`` is used as the grid itself (values beyond a run's ends are held
    constant). ``bins`` first averages each run into that many bins (for dense update rows).
    Seeds are in ascending order.
    """
    runs = results.runs(scenario, method, metric)
    if not runs:
        raise KeyError(f"no {metric!r} rows for scenario {scenario!r}, method {method!r}")
    series = [bin_series(s, bins) if bins else s for _, s in sorted(runs.items())]
    if isinstance(grid_points, np.ndarray):
        steps = grid_points.astype(float)
    else:
        lo = max(s.steps[0] for s in series)
        hi = min(s.steps[-1] for s in series)
        if lo > hi:
            raise ValueError(
                f"the seeds' {metric!r} series of {scenario!r} / {method!r} share no step range "
                f"(latest start {lo:g} > earliest end {hi:g})"
            )
        n = grid_points or min(len(s.steps) for s in series)
        steps = np.linspace(lo, hi, n) if hi > lo else np.array([lo])
    values = np.stack([np.interp(steps, s.steps, s.values) for s in series])
    return steps, values


# ----------------------------------------------------------------------------- figures
def plot_results(
    results_dir: str | Path, out_dir: str | Path | None = None, max_step: float | None = None
) -> list[Path]:
    """Write the experiment's figures as PNGs; returns their paths (figures whose metric is
    absent are skipped). ``max_step``: as in :func:`load_results`.

    ``returns.png`` (and ``win_rate.png``, ``goal_score.png``, ``food_collected.png`` when
    logged): test curves, one panel per scenario, one line per method (mean across seeds with a
    95% CI band). ``delta_h.png``: BDPS's team-minus-individual entropy difference (the paper's
    Fig. 6); ``role_recon_ratio.png``, ``roles_per_env.png``, ``groups_per_env.png``: whether
    roles and groups carry information (dashed: the no-information value). ``roles.png`` /
    ``groups.png``: the share of agents in each role / group over training, one panel per
    scenario (rows) and BDPS method (columns).
    """
    results = load_results(results_dir, max_step)
    out = Path(out_dir) if out_dir is not None else results.path.parent / "plots"
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Figure | None]] = [
        (filename, _curve_figure(results, f"test/{name}", ylabel))
        for name, (filename, ylabel) in TEST_METRICS.items()
    ]
    for name, (filename, ylabel, reference) in UPDATE_METRICS.items():
        figures.append((filename, _update_figure(results, f"update/{name}", ylabel, reference)))
    figures.append(("roles.png", _assignment_figure(results, "role")))
    figures.append(("groups.png", _assignment_figure(results, "group")))
    written = []
    for filename, fig in figures:
        if fig is not None:
            fig.savefig(out / filename, dpi=110)
            written.append(out / filename)
    return written


def _new_figure(
    nrows: int, ncols: int, width: float = 4.8, height: float = 3.6
) -> tuple[Figure, np.ndarray]:
    """A Figure (Agg canvas) and its ``(nrows, ncols)`` array of axes."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _steps_axis(ax: Any) -> None:
    """x axis in env steps, ticks as 50k, 1M (full numbers overlap)."""
    ax.set_xlabel("env steps")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))


def _panels(n: int, max_cols: int = 3) -> tuple[Figure, list[Any]]:
    """A figure with ``n`` panels in rows of at most ``max_cols``; unused axes hidden."""
    ncols = min(n, max_cols)
    nrows = -(-n // ncols)
    fig, axes = _new_figure(nrows, ncols)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _color(results: Results, method: str) -> str:
    """One colour per method, the same in every panel and figure."""
    return f"C{results.methods.index(method) % 10}"


def _curve_figure(
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
    fig, axes = _panels(len(cells))
    for ax, (scenario, methods) in zip(axes, cells.items(), strict=True):
        for method in methods:
            steps, values = curves(results, metric, scenario, method, bins=bins)
            mean, low, high = mean_ci(values)
            color = _color(results, method)
            n = len(values)
            ax.plot(steps, mean, color=color, label=f"{method} ({n} seed{'s' * (n > 1)})")
            ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
        ax.set_title(scenario)
        _steps_axis(ax)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    return fig


def _update_figure(results: Results, metric: str, ylabel: str, reference: float) -> Figure | None:
    """An update statistic over training (binned update rows), with a dashed reference line
    (e.g. the paper's Fig. 6: ΔH = H(team level) − H(individual level) against 0)."""
    fig = _curve_figure(results, metric, ylabel, bins=UPDATE_BINS)
    if fig is not None:
        for ax in fig.axes:
            if ax.get_visible():
                ax.axhline(reference, color="0.4", linewidth=0.8, linestyle="--")
    return fig


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
    fig, axes = _new_figure(len(scenarios), len(methods), height=3.2)
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
    _steps_axis(ax)
    ax.set_ylabel(f"share of agents per {kind}")
    ax.set_ylim(0.0, 1.0)
    ax.margins(x=0)
    ax.legend(loc="upper right", fontsize="small")


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


#: BDPS diagnostics in the summary table, averaged over the last LATE_FRACTION of each run's
#: update rows (single update rows are noisy).
SUMMARY_UPDATE_METRICS = ("role_recon_ratio", "roles_per_env", "groups_per_env")
LATE_FRACTION = 0.1


def summary_table(results: Results, confidence: float = 0.95) -> str:
    """Markdown table: per scenario × method the final mean ± CI half-width across seeds of the
    test return (``final/greedy_return``, else the last test value) and of each other test
    metric present (win rate, goal score, food collected), then BDPS's information diagnostics
    (``SUMMARY_UPDATE_METRICS``) over the last 10% of training."""
    names = [
        name
        for name in TEST_METRICS
        if any(m in results.metrics for m in (f"final/{name}", f"test/{name}"))
    ]
    updates = [name for name in SUMMARY_UPDATE_METRICS if f"update/{name}" in results.metrics]
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
    mean, low, high = mean_ci(values, confidence)
    if values.size == 1:
        return f"{float(mean):.3f}"
    return f"{float(mean):.3f} ± {float(high - mean):.3f}"
