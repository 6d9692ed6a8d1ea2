"""Test curves across seeds from ``bdps train`` run directories.

    python benchmarks/learning_curves.py [--metric win_rate] OUT.png "label=glob" ["label=glob" ...]
    e.g. python benchmarks/learning_curves.py docs/lbf.png "coop=runs/coop-s*" "non-coop=runs/nc-s*"

Reads each run's ``metrics.csv`` (scope ``test``, metric ``greedy_return`` or ``--metric``, e.g.
``win_rate`` for SMAC/SMAX or ``goal_score`` for GRF), plots the mean and the
min-max band across the runs matched by each glob, and prints a table of the mean (and each
seed's value, linearly interpolated onto common steps) at every evaluation step.
"""

from __future__ import annotations

import csv
import glob
import sys
from pathlib import Path

import numpy as np

LABELS = {
    "greedy_return": "greedy test return (32 episodes)",
    "win_rate": "test win rate (32 greedy episodes)",
    "goal_score": "test episodes with a goal (fraction)",
}


def read_curve(run_dir: str, metric: str = "greedy_return") -> dict[int, float]:
    curve = {}
    with (Path(run_dir) / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            if row["scope"] == "test" and row["metric"] == metric:
                curve[int(row["step"])] = float(row["value"])
    return curve


def main(argv: list[str]) -> None:
    metric = "greedy_return"
    if argv[:1] == ["--metric"]:
        metric, argv = argv[1], argv[2:]
    if len(argv) < 2:
        sys.exit(__doc__)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, groups = argv[0], argv[1:]
    fig, ax = plt.subplots(figsize=(7, 4))
    for group in groups:
        label, _, pattern = group.partition("=")
        runs = sorted(r for r in glob.glob(pattern) if (Path(r) / "metrics.csv").is_file())
        curves = [read_curve(r, metric) for r in runs]
        if not curves:
            print(f"{label}: no runs match {pattern}")
            continue
        # evaluation steps differ slightly between seeds (warm-up length varies): interpolate
        # every curve onto the evaluation steps of the shortest run, within the common range
        shortest = min(curves, key=len)
        last = min(max(c) for c in curves)
        steps = [s for s in sorted(shortest) if s <= last]
        values = np.array([np.interp(steps, sorted(c), [c[k] for k in sorted(c)]) for c in curves])
        mean = values.mean(0)
        ax.plot(steps, mean, label=f"{label} (seeds: {len(runs)})")
        ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2)
        print(f"\n{label}: {', '.join(Path(r).name for r in runs)}")
        for i, s in enumerate(steps):
            per_seed = " ".join(f"{v:.2f}" for v in values[:, i])
            print(f"  {s:>8d}  mean {mean[i]:.3f}   [{per_seed}]")
    ax.set_xlabel("env steps")
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
