"""What an experiment will cost before it starts: runs, env steps and a rough duration
(``bdps reproduce --list``, and the line ``bdps experiment`` / ``bdps reproduce`` print first)."""

from __future__ import annotations

from collections.abc import Sequence

from bdps_agents.algorithms import run_label
from bdps_agents.grid import RunSpec, expand, experiment_names, load_grid
from bdps_agents.run_rates import GridCost, RunCost, default_parallel_runs, grid_cost, steps_text


def specs_cost(specs: Sequence[RunSpec]) -> GridCost:
    return grid_cost(
        [RunCost(s.scenario, run_label(s.config), s.config.training.total_steps) for s in specs]
    )


def budget_line(specs: Sequence[RunSpec], todo: Sequence[RunSpec], parallel: int) -> str:
    """``budget: 12 runs, 2.4M env steps; to train: 12 runs, 2.4M env steps, ≈ ...``."""
    whole, left = specs_cost(specs), specs_cost(todo)
    return (
        f"budget: {whole.runs} runs, {steps_text(whole.steps)} env steps; to train now: "
        f"{left.runs} runs, at most {steps_text(left.steps)} env steps, "
        f"{left.duration(parallel)} (rough: bdps_agents/run_rates.py)"
    )


def experiments_table() -> str:
    """The shipped experiments, one line each: runs, env steps per run and in all, duration."""
    rows = [("experiment", "runs", "steps/run", "env steps", "rough duration")]
    for name in experiment_names():
        grid = load_grid(name)
        specs = expand(grid)
        cost = specs_cost(specs)
        per_run = sorted({s.config.training.total_steps for s in specs})
        span = steps_text(per_run[0]) + (f"-{steps_text(per_run[-1])}" if len(per_run) > 1 else "")
        duration = cost.duration(default_parallel_runs(grid.cpus_per_run))
        rows.append((name, str(cost.runs), span, steps_text(cost.steps), duration))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(row[i].ljust(widths[i]) for i in range(4)) + "  " + row[4] for row in rows]
    note = (
        "Durations are rough: env steps/s measured on a 2-core CPU machine, one run per core "
        "(sources in bdps_agents/run_rates.py); --steps N and --seeds 0,1 shrink a budget."
    )
    return "\n".join([*lines, "", note, "Run one with: bdps reproduce NAME"])
