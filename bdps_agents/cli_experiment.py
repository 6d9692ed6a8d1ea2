"""The ``bdps`` commands on experiments (grids of runs): ``experiment``, ``reproduce``, ``plot``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from bdps_agents.cli_arguments import check_positive, check_seed, finite_step, seed_list


def _run_grid(args: argparse.Namespace, name: str) -> tuple[Path, Exception | None]:
    """Run an experiment file or shipped name with the command's options: its results
    directory, and the ``GridRunError`` that listed failed runs (None if none failed)."""
    from bdps_agents.experiment import GridRunError, run_experiment
    from bdps_agents.grid import load_grid

    grid = load_grid(name).with_overrides(_grid_items(args))
    try:
        return run_experiment(grid, **_grid_options(args)), None
    except GridRunError as err:  # the runs that finished are in the results
        return Path(args.results_dir or grid.results_dir), err


def _interrupted(args: argparse.Namespace) -> str:
    """What a Ctrl-C during an experiment leaves, and the command that continues it."""
    return (
        "interrupted: the finished runs are kept and the interrupted one resumes from its last "
        f"checkpoint; continue with: bdps {shlex.join(args.argv)}"
    )


def experiment(args: argparse.Namespace) -> int:
    try:
        root, failure = _run_grid(args, args.config)
    except KeyboardInterrupt:
        print(_interrupted(args), file=sys.stderr)
        return 130
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    print(f"plot it with: bdps plot {root}")
    return 0


def reproduce(args: argparse.Namespace) -> int:
    from bdps_agents.grid_budget import experiments_table
    from bdps_agents.plotting import plot_results, summary_table
    from bdps_agents.results import load_results

    if args.list or args.name is None:
        print(experiments_table())
        return 0
    try:
        root, failure = _run_grid(args, args.name)
    except KeyboardInterrupt:
        print(_interrupted(args), file=sys.stderr)
        return 130
    for path in plot_results(root):  # the runs that finished, also when some failed
        print(f"wrote {path}")
    print(summary_table(load_results(root)))
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    return 0


def plot(args: argparse.Namespace) -> int:
    from bdps_agents.experiment import refresh_results
    from bdps_agents.plotting import plot_results, summary_table
    from bdps_agents.results import load_results

    refresh_results(args.results_dir)  # also plots an experiment that is still running

    for path in plot_results(args.results_dir, args.out, args.max_step):
        print(f"wrote {path}")
    print(summary_table(load_results(args.results_dir, args.max_step)))
    return 0


def _grid_options(args: argparse.Namespace) -> dict:
    return {"results_dir": args.results_dir, "local": args.local, "address": args.address}


def _grid_items(args: argparse.Namespace) -> list[str]:
    """``--steps`` and ``--seeds`` as ``--set`` items on the experiment file's fields."""
    items = list(args.set or [])
    check_positive("--steps", args.steps, "env steps per run")
    if args.steps is not None:
        items.append(f"total_steps={args.steps}")
    if args.seeds is not None:
        for seed in args.seeds:
            check_seed(seed)
        items.append(f"seeds={json.dumps(args.seeds)}")
    return items


def add_grid_options(p: argparse.ArgumentParser) -> None:
    """The options ``experiment`` and ``reproduce`` share."""
    p.add_argument("--results-dir", default=None, help="default: the file's results_dir")
    p.add_argument("--local", action="store_true", help="run sequentially, without Ray")
    p.add_argument("--address", default=None, help="an existing Ray cluster, e.g. auto")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="env steps per run (the file's total_steps); finished runs with fewer train on "
        "to it, so a budget can be raised step by step",
    )
    p.add_argument(
        "--seeds",
        type=seed_list,
        default=None,
        help="comma-separated seeds, e.g. 0,1,2 (the file's seeds)",
    )
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="e.g. overrides.training.lr=1e-3"
    )


def add_plot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("results_dir")
    p.add_argument("--out", default=None, help="default: RESULTS_DIR/plots")
    p.add_argument(
        "--max-step",
        type=finite_step,
        default=None,
        help="ignore rows after this env step (compare runs trained for different budgets)",
    )
