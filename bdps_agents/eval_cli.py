"""``bdps eval``: greedy episodes with a checkpoint, as chosen or with the assignments of a
role-based method replaced (``--roles``, ``--groups``), and its selector value."""

from __future__ import annotations

import argparse
import json


def _eval(args: argparse.Namespace) -> int:
    from bdps_agents.cli_arguments import check_positive, check_seed
    from bdps_agents.training import evaluate
    from bdps_agents.training import selector_value as sv

    check_positive("--episodes", args.episodes, "episodes")
    check_seed(args.seed)
    result: dict
    if args.selector_value:
        result = sv.evaluate_selector_value(args.checkpoint, args.episodes, args.seed or 0)
    elif args.roles != "chosen" or args.groups != "chosen":
        result = sv.evaluate_assignments(
            args.checkpoint, args.episodes, args.roles, args.groups, args.seed or 0
        )
    else:
        result = evaluate(args.checkpoint, episodes=args.episodes, seed=args.seed)
    print(json.dumps(result))
    return 0


def add_eval_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    e = sub.add_parser("eval", parents=[common], help="greedy episodes with a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--episodes", type=int, default=32)
    e.add_argument("--seed", type=int, default=None)
    for level, what in (("roles", "roles (RODE: roles; SePS: clusters)"), ("groups", "groups")):
        e.add_argument(
            f"--{level}",
            default="chosen",
            help=f"replace the chosen {what} at every decision: chosen, random (per agent), "
            "random-team (one per env), random-partition (groups: every group non-empty), "
            "fixed:N; episodes on fixed env seeds (--seed picks them), paired with any other "
            "such call",
        )
    e.add_argument(
        "--selector-value",
        action="store_true",
        help="greedy return with the chosen assignments minus with random ones, per level, "
        "paired on the same env seeds, with 95%% intervals (role-based methods)",
    )
    e.set_defaults(fn=_eval)


def _selector_value(args: argparse.Namespace) -> int:
    from bdps_agents.cli_arguments import check_positive
    from bdps_agents.training.selector_report import selector_report

    check_positive("--episodes", args.episodes, "episodes")
    path, table = selector_report(args.results_dir, args.episodes, args.overwrite)
    print(table)
    print(f"per-run values and intervals over episodes: {path}")
    return 0


def add_selector_value_parser(
    sub: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    s = sub.add_parser(
        "selector-value",
        parents=[common],
        help="every run of an experiment on the same greedy episodes: return, assignments per "
        "env, and for role-based methods chosen − random assignments (paired, 95%% CIs)",
    )
    s.add_argument("results_dir", help="a bdps experiment / reproduce results directory")
    s.add_argument("--episodes", type=int, default=100, help="paired episodes per run")
    s.add_argument(
        "--overwrite",
        action="store_true",
        help="evaluate runs again that were evaluated before (each run keeps its values in "
        "its own selector_value.csv; without it they are read back)",
    )
    s.set_defaults(fn=_selector_value)
