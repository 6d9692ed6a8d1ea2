"""Rough durations of experiments from measured env steps per second.

The rates are what one run (one CPU thread, 8 envs, tests included) reached on the project's
2-core machine, often with a second run on the other core; a run on another machine, under
another load or on a GPU differs, so the durations are a guide to the order of magnitude, not
a promise. Sources, newest first:

- ``benchmarks/README.md`` (``throughput.py`` and ``device.py``, end to end, learning in turn):
  LBF 15x15-4p-5f QMIX 1,153 and BDPS 485 steps/s; SMAX 5m_vs_6m QMIX 1,859, BDPS 526;
  SMAX 27m_vs_30m QMIX 71, BDPS 38.
- The experiments of ``docs/results/`` (whole runs as the experiment log reports them):
  SMAX 5m_vs_6m QMIX 460, QMIX without sharing 520, BDPS single level 350, BDPS 245, the
  partition variant 245 (paper-fig4-sharing, 150k steps, two runs at a time; the throughput
  benchmark's 1,859 and 526 above are the first few thousand steps, whose episodes are short);
  SMAX 3m QMIX 1,010-1,240, QMIX without sharing 790-880, RODE 400-770, SePS 480-1,030,
  BDPS 240-280 (baselines-smax); SMAX 2s3z RODE 148, SePS 157, about 150 for QMIX and 130 for
  BDPS (baselines-smax, sharing-smax-2s3z: 12 runs of 100k in about 2.5 h of one core);
  LBF 8x8-2p-2f about 500 (vdn-vs-qmix-lbf: 6 runs of 100k in about 20 min of one core).
- docs/results/throughput.md (full stack): GRF academy_3_vs_1_with_keeper QMIX 100, BDPS 41.

A pair with no measurement takes the scenario's QMIX rate divided by the method's cost per env
step relative to QMIX (``COST_VS_QMIX``); a scenario with no measured rate has no estimate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

# env steps/s of one QMIX run (full sharing) per scenario preset
QMIX_STEPS_PER_S: dict[str, float] = {
    "lbf/8x8-2p-2f": 500,
    "lbf/8x8-2p-2f-coop": 500,
    "lbf/15x15-4p-5f": 1153,
    "smax/3m": 1100,
    "smax/2s3z": 150,
    "smax/5m_vs_6m": 460,
    "smax/27m_vs_30m": 71,
    "grf/academy_3_vs_1_with_keeper": 100,
}

# measured (scenario, run label) pairs that differ from QMIX's rate / the cost factor
MEASURED_STEPS_PER_S: dict[tuple[str, str], float] = {
    ("lbf/15x15-4p-5f", "bdps"): 485,
    ("smax/3m", "qmix-none"): 830,
    ("smax/3m", "bdps"): 260,
    ("smax/3m", "rode"): 550,
    ("smax/3m", "seps"): 780,
    ("smax/2s3z", "bdps"): 130,
    ("smax/2s3z", "rode"): 148,
    ("smax/2s3z", "seps"): 157,
    ("smax/5m_vs_6m", "qmix-none"): 520,
    ("smax/5m_vs_6m", "bdps-individual"): 350,
    ("smax/5m_vs_6m", "bdps"): 245,
    ("smax/27m_vs_30m", "bdps"): 38,
    ("grf/academy_3_vs_1_with_keeper", "bdps"): 41,
}

# time per env step relative to QMIX with full sharing (run labels, see ``run_label``):
# BDPS 2.8-4.4 in the benchmarks, RODE and SePS 1.5-2.5 and QMIX without sharing 1.3 on SMAX
# 3m; CDS's update 3.9x QMIX-with-QPLEX's (docs/methods/cds.md, "Cost"); VDN is QMIX's
# learner with a cheaper mixer; EOI is not measured: QMIX's learner plus a small classifier,
# counted as QMIX.
COST_VS_QMIX: dict[str, float] = {
    "qmix": 1.0,
    "vdn": 1.0,
    "eoi": 1.0,
    "qmix-none": 1.3,
    "seps": 1.5,
    "rode": 2.0,
    "bdps": 3.5,
    "bdps-individual": 3.0,
    "cds": 4.0,
}


def steps_per_second(scenario: str, label: str) -> float | None:
    """The rough env steps/s of one run of ``label`` on ``scenario``; None when unknown."""
    if (scenario, label) in MEASURED_STEPS_PER_S:
        return MEASURED_STEPS_PER_S[scenario, label]
    base = QMIX_STEPS_PER_S.get(scenario)
    cost = COST_VS_QMIX.get(label, COST_VS_QMIX.get(label.split("-")[0]))
    if base is None or cost is None:
        return None
    return base / cost


@dataclass(frozen=True)
class RunCost:
    """One run of a grid: where, what, and how many env steps."""

    scenario: str
    label: str
    steps: int


@dataclass(frozen=True)
class GridCost:
    """The runs of a grid summed: env steps, CPU-core seconds of the runs with a rate, and the
    (scenario, label) pairs without one."""

    runs: int
    steps: int
    core_seconds: float
    unknown: tuple[str, ...]

    def duration(self, parallel: int) -> str:
        """``≈ 2.5 h of one CPU core (≈ 1.3 h as 2 parallel runs)``; ``≥`` when some rates are
        unknown, which are named."""
        if self.runs == 0:
            return "nothing to train"
        if self.core_seconds == 0:
            return f"unknown (no measured rate for {', '.join(self.unknown)})"
        at_least = "≥ " if self.unknown else "≈ "
        text = f"{at_least}{_hours(self.core_seconds)} of one CPU core"
        lanes = max(1, min(parallel, self.runs))
        if lanes > 1:
            text += f" ({at_least}{_hours(self.core_seconds / lanes)} as {lanes} parallel runs)"
        if self.unknown:
            text += f"; no measured rate for {', '.join(self.unknown)}"
        return text


def grid_cost(runs: Sequence[RunCost]) -> GridCost:
    seconds, unknown = 0.0, []
    for run in runs:
        rate = steps_per_second(run.scenario, run.label)
        if rate is None:  # name the scenario when nothing on it was measured
            known = run.scenario in QMIX_STEPS_PER_S
            unknown.append(f"{run.scenario} {run.label}" if known else run.scenario)
        else:
            seconds += run.steps / rate
    return GridCost(
        len(runs), sum(run.steps for run in runs), seconds, tuple(dict.fromkeys(unknown))
    )


def default_parallel_runs(cpus_per_run: float) -> int:
    """How many runs a local Ray runs at once on this machine."""
    return max(1, int((os.cpu_count() or 1) // cpus_per_run))


def _hours(seconds: float) -> str:
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def steps_text(steps: int) -> str:
    """12,600,000 -> ``12.6M``; 300,000 -> ``300k``."""
    if steps >= 1_000_000:
        return f"{steps / 1e6:.3g}M"
    if steps >= 1_000:
        return f"{steps / 1e3:.3g}k"
    return str(steps)
