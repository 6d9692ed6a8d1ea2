"""An experiment's ``results.csv`` read into series, and the statistics across seeds.

``results.csv`` (written by :mod:`bdps_agents.experiment`) is a tidy table with the columns
``run_id, scenario, method, seed, env_step, metric, value``; ``metric`` is ``"<scope>/<name>"``
(``test/greedy_return``, ``test/win_rate``, ``update/delta_h``, ``final/greedy_return``, ...).
One run is one (scenario, method, seed).

Curves across seeds: every seed's series is interpolated (linearly) onto a common grid of env
steps inside the range that all seeds cover (evaluation steps differ slightly between seeds,
because the warm-up lengths differ, and runs may have different lengths); the band is the 95%
Student-t confidence interval of the mean across seeds (:func:`mean_ci`). Update rows (one per
logged gradient step) are first averaged into about 100 bins per run. Nothing here needs pandas
or scipy.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bdps_agents.config import ResultsError

RESULTS_COLUMNS = ("run_id", "scenario", "method", "seed", "env_step", "metric", "value")
#: Points per run that dense update rows are averaged into before seeds are combined.
UPDATE_BINS = 100


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
