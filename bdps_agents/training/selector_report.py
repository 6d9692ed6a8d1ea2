"""``bdps selector-value RESULTS_DIR``: the selector value of every run of an experiment.

Each finished run's checkpoint plays the same greedy episodes (env seeds ``EVAL_SEED_BASE``
onwards) as chosen and, for role-based methods, with each level's choices replaced
(:func:`~bdps_agents.training.selector_value.selector_value`, against random assignments and
against every fixed one); methods without assignments
(QMIX, ...) play the chosen episodes only, so every method's return is measured on the same
seeds. One CSV row per run and value (``selector_value.csv`` in the results dir), then a table:
per scenario × method the mean over seeds with a 95% Student-t interval over seeds, next to the
per-run intervals over episodes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from bdps_agents.config import ResultsError
from bdps_agents.results import mean_ci
from bdps_agents.training.evaluation import checkpoint_run
from bdps_agents.training.selector_value import (
    EVAL_SEED_BASE,
    offered_levels,
    paired_episodes,
    selector_value,
)

COLUMNS = [
    "scenario", "method", "seed", "episodes", "quantity", "value", "ci_low", "ci_high",
]  # fmt: skip


def run_rows(checkpoint: Path, episodes: int) -> list[dict[str, object]]:
    """Rows of one run: its chosen episodes' means (``quantity`` = ``return``, ``win_rate``,
    ``groups_per_env``, ...) and each selector value (``role_value:random:return``, ...)."""
    config = json.loads((checkpoint.parent / "config.json").read_text())
    scenario = str(config.get("scenario"))
    method = checkpoint.parent.name.split("--")[1]
    seed = int(config["training"]["seed"])
    base = {"scenario": scenario, "method": method, "seed": seed, "episodes": episodes}
    rows: list[dict[str, object]] = []
    with checkpoint_run(checkpoint) as run:
        if offered_levels(run.policy):
            chosen, values = selector_value(run, episodes, EVAL_SEED_BASE, fixed=True)
        else:
            seeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + episodes)
            metrics = run.test_metrics
            chosen = paired_episodes(run.policy, run.test_envs, seeds, metrics.keys, metrics.names)
            values = []
    per_episode = {"return": chosen.returns, **chosen.metrics, **chosen.assignments}
    for quantity, v in per_episode.items():
        mean, low, high = mean_ci(np.asarray(v, dtype=float))
        rows.append({**base, "quantity": quantity, "value": mean, "ci_low": low, "ci_high": high})
    for value in values:
        quantity = f"{value.level.removesuffix('s')}_value:{value.baseline}:{value.metric}"
        rows.append(
            {**base, "quantity": quantity, "value": value.mean, "ci_low": value.low,
             "ci_high": value.high}
        )  # fmt: skip
    return rows


def finished(checkpoint: Path) -> bool:
    """The run of ``checkpoint`` reached its budget: its metrics.csv holds the final
    evaluation (a run still training, or killed, has an epoch's checkpoint but no final row)."""
    metrics = checkpoint.parent / "metrics.csv"
    if not metrics.is_file():
        return False
    with metrics.open() as f:
        return any(line.startswith("final,") for line in f)


def selector_report(
    results_dir: str | Path, episodes: int = 100, overwrite: bool = False
) -> tuple[Path, str]:
    """Evaluate every finished run (:func:`finished`) of ``results_dir`` (a ``bdps
    experiment`` results directory): each run's rows go to its own ``selector_value.csv``, all
    of them to ``selector_value.csv`` in ``results_dir``; returns its path and a markdown table.
    A run evaluated before with as many episodes is read back, not played again (its values are
    replaced only with ``overwrite``)."""
    root = Path(results_dir)
    checkpoints = [path for path in sorted(root.glob("runs/*/checkpoint.pt")) if finished(path)]
    if not checkpoints:
        raise ResultsError(
            f"{root} holds no finished runs (runs/*/ with a checkpoint.pt and a final "
            "evaluation in metrics.csv)"
        )
    out = root / "selector_value.csv"  # merged anew from the runs' own files, as results.csv
    rows = []
    for checkpoint in checkpoints:
        # each run's rows are kept beside its checkpoint: a second report (more runs finished)
        # evaluates only the new ones
        cached = checkpoint.parent / "selector_value.csv"
        own = read_rows(cached) if cached.is_file() and not overwrite else []
        if not own or any(int(row["episodes"]) != episodes for row in own):  # type: ignore[call-overload]
            own = run_rows(checkpoint, episodes)
            write_rows(cached, own)
        rows += own
    write_rows(out, rows)
    return out, summary(rows)


def write_rows(path: Path, rows: list[dict[str, object]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def read_rows(path: Path) -> list[dict[str, object]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def summary(rows: list[dict[str, object]]) -> str:
    """Markdown: per scenario × method × quantity, the mean of the per-run values over seeds
    ± the 95% half-width over seeds, and the per-seed values."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for row in rows:
        key = (str(row["scenario"]), str(row["method"]), str(row["quantity"]))
        groups.setdefault(key, []).append(float(row["value"]))  # type: ignore[arg-type]
    lines = ["| scenario | method | quantity | mean ± 95% CI over seeds | per seed |",
             "|---|---|---|---|---|"]  # fmt: skip
    for (scenario, method, quantity), values in sorted(groups.items()):
        mean, _, high = mean_ci(np.asarray(values))
        cell = f"{float(mean):.3f}" + (f" ± {float(high - mean):.3f}" if len(values) > 1 else "")
        seeds = " / ".join(f"{v:.3f}" for v in values)
        lines.append(f"| {scenario} | {method} | {quantity} | {cell} | {seeds} |")
    return "\n".join(lines) + "\n"
