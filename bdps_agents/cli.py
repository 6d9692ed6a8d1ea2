"""``bdps`` command line: train, eval, scenarios.

bdps train --scenario lbf/8x8-2p-2f-coop --algo qmix --steps 200000 --seed 0 --logdir runs/x
bdps train --scenario my.yaml --set algorithm.lr=1e-3 --set network.sharing=none
bdps eval --checkpoint runs/x/checkpoint.pt --episodes 100
bdps scenarios
"""

from __future__ import annotations

import argparse
import json
import sys

from bdps_agents.config import ConfigError, load_config, scenario_names


def _train(args: argparse.Namespace) -> int:
    from bdps_agents.training import train

    overrides = list(args.set or [])
    # --algo is a shortcut for the sharing mode: QMIX = full sharing, BDPS = bi-level
    sharing = args.sharing or {"qmix": "full", "bdps": "bilevel", None: None}[args.algo]
    if sharing is not None:
        overrides.append(f"network.sharing={sharing}")
    if args.steps is not None:
        overrides.append(f"training.total_steps={args.steps}")
    if args.seed is not None:
        overrides.append(f"training.seed={args.seed}")
    if args.no_progress:
        overrides.append("training.progress=false")
    cfg = load_config(args.scenario, overrides)
    algo = "BDPS" if cfg.uses_selectors else "QMIX"
    print(
        f"training {algo} ({cfg.network.sharing} sharing) on {cfg.scenario}, "
        f"{cfg.training.total_steps} env steps, seed {cfg.training.seed}",
        flush=True,
    )
    result = train(cfg, args.logdir)
    extra = "".join(f", {name} {value:.3f}" for name, value in result.final_metrics.items())
    print(
        f"final greedy return {result.final_greedy_return:.3f}{extra} "
        f"after {result.env_steps} env steps "
        f"({result.steps_per_second:.0f} steps/s)\n"
        f"checkpoint: {result.checkpoint}\n"
        f"learning curve: {result.logdir / 'learning_curve.png'}\n"
        f"logs (TensorBoard + metrics.csv): {result.logdir}",
        flush=True,
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from bdps_agents.training import evaluate

    result = evaluate(args.checkpoint, episodes=args.episodes, seed=args.seed)
    print(json.dumps(result))
    return 0


def _scenarios(args: argparse.Namespace) -> int:
    print("\n".join(scenario_names()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bdps", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train on a scenario preset or YAML file")
    t.add_argument("--scenario", required=True, help="preset (see `bdps scenarios`) or YAML path")
    t.add_argument(
        "--algo",
        choices=["qmix", "bdps"],
        default=None,
        help="qmix = --sharing full, bdps = --sharing bilevel",
    )
    t.add_argument("--sharing", choices=["full", "none", "individual", "bilevel"], default=None)
    t.add_argument("--steps", type=int, default=None, help="env steps (training.total_steps)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--logdir", default=None, help="default: <training.logdir>/<scenario>-seed<S>")
    t.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="config override, repeatable"
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(fn=_train)

    e = sub.add_parser("eval", help="greedy episodes with a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--episodes", type=int, default=32)
    e.add_argument("--seed", type=int, default=None)
    e.set_defaults(fn=_eval)

    s = sub.add_parser("scenarios", help="list scenario presets")
    s.set_defaults(fn=_scenarios)
    return parser


def main(argv: list[str] | None = None) -> int:
    from bdps_agents.adapters import UnknownAdapterError

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    # ImportError: an optional simulator is not installed (the message gives the install command)
    except (ConfigError, FileNotFoundError, ImportError, UnknownAdapterError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
