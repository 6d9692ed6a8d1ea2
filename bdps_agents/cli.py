"""``bdps`` command line: train, eval, experiment, plot, render, reproduce, scenarios.

bdps train --scenario lbf/8x8-2p-2f-coop --algo qmix --steps 200000 --seed 0 --logdir runs/x
bdps train --scenario smax/5m_vs_6m --algo bdps --set bdps.levels=1 --set algorithm.lr=1e-3
bdps train ... --logdir runs/x --resume          # continue a killed run from its checkpoint
bdps eval --checkpoint runs/x/checkpoint.pt --episodes 100
bdps experiment grid.yaml [--local | --address auto]   # scenarios x methods x seeds on Ray
bdps plot results/grid                            # mean +- 95% CI figures to results/grid/plots
bdps render --checkpoint runs/x/checkpoint.pt --out episode.gif
bdps reproduce lbf-ablation                       # the paper's Fig. 9 comparison, then its plots
bdps scenarios
bdps options rode                                 # an algorithm's own settings, with defaults
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bdps_agents.algorithms import algorithm_spec, available_algorithms, run_label
from bdps_agents.cli_arguments import ArgumentValueError, check_positive, check_seed
from bdps_agents.cli_experiment import (
    add_grid_options,
    add_plot_options,
    experiment,
    plot,
    reproduce,
)
from bdps_agents.cli_options import add_options_command
from bdps_agents.config import ConfigError, ResultsError
from bdps_agents.presets import load_config, scenario_names
from bdps_agents.settings import check_environment_variables

# --sharing values that named BDPS before algorithms were registered units: their overrides now
LEGACY_SHARING_FLAGS = {
    "bilevel": ("--algo bdps", ["algorithm.name=bdps", "bdps.levels=2"]),
    "individual": ("--algo bdps --set bdps.levels=1", ["algorithm.name=bdps", "bdps.levels=1"]),
}


def _algorithm_overrides(algo: str | None, sharing: str | None) -> list[str]:
    """``--algo`` and ``--sharing`` as config overrides; the old BDPS spellings of ``--sharing``
    still work, with a note giving the new one."""
    out = [f"algorithm.name={algo}"] if algo else []
    if sharing in LEGACY_SHARING_FLAGS:
        new, overrides = LEGACY_SHARING_FLAGS[sharing]
        if algo not in (None, "bdps"):
            raise ConfigError(f"--sharing {sharing} means BDPS, not --algo {algo}: drop one")
        print(f"note: --sharing {sharing} is now spelled {new}", file=sys.stderr)
        return overrides
    if sharing is not None:
        out.append(f"network.sharing={sharing}")
    return out


def _train(args: argparse.Namespace) -> int:
    from bdps_agents.training import CheckpointError, default_logdir, train

    check_seed(args.seed)
    overrides = list(args.set or []) + _algorithm_overrides(args.algo, args.sharing)
    if args.steps is not None:
        overrides.append(f"training.total_steps={args.steps}")
    if args.seed is not None:
        overrides.append(f"training.seed={args.seed}")
    if args.no_progress:
        overrides.append("training.progress=false")
    cfg = load_config(args.scenario, overrides)
    from bdps_agents.device import resolve_device

    resolve_device(cfg.training.device)  # a missing GPU is refused before anything is printed
    label = run_label(cfg)
    print(
        f"{'resuming' if args.resume else 'training'} {label} ({cfg.network.sharing} sharing) "
        f"on {cfg.scenario}, {cfg.training.total_steps} env steps, seed {cfg.training.seed}",
        flush=True,
    )
    logdir = Path(args.logdir) if args.logdir else default_logdir(cfg)
    try:
        result = train(cfg, logdir, resume=args.resume, overwrite=args.overwrite)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(_interrupted(logdir, args.argv), file=sys.stderr)
        return 130
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


def _interrupted(logdir: Path, argv: list[str]) -> str:
    """What a Ctrl-C during ``bdps train`` leaves, and the command that continues it."""
    from bdps_agents.training import CHECKPOINT_NAME

    checkpoint = logdir / CHECKPOINT_NAME
    if not checkpoint.is_file():
        return (
            f"interrupted before the first checkpoint: nothing to resume in {logdir}; start "
            "again with --overwrite"
        )
    again = [a for a in argv if a not in ("--overwrite", "--resume")]
    if "--logdir" not in again:
        again += ["--logdir", str(logdir)]
    return (
        f"interrupted: the last checkpoint is {checkpoint}; continue with: "
        f"bdps {shlex.join([*again, '--resume'])}"
    )

    return 0


def _render(args: argparse.Namespace) -> int:
    from bdps_agents.render import check_output_path, render_episode

    check_seed(args.seed)
    check_positive("--max-steps", args.max_steps, "steps (leave it out for whole episodes)")
    try:  # up front: Pillow would refuse the extension only after the whole episode
        check_output_path(args.out)
    except ValueError as err:
        raise ArgumentValueError(f"--out: {err}") from None
    out = render_episode(args.checkpoint, args.out, seed=args.seed, max_steps=args.max_steps)
    print(f"wrote {out}")
    return 0


def _scenarios(args: argparse.Namespace) -> int:
    print("\n".join(scenario_names()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    # --debug before or after the command (SUPPRESS: a subcommand's default does not reset it)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks instead of one-line errors",
    )
    parser = argparse.ArgumentParser(
        prog="bdps", description=__doc__.split("\n")[0], parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", parents=[common], help="train on a scenario preset or YAML file")
    t.add_argument("--scenario", required=True, help="preset (see `bdps scenarios`) or YAML path")
    t.add_argument(
        "--algo",
        choices=available_algorithms(),
        default=None,
        help="a registered algorithm (algorithm.name; its own settings: bdps options NAME): "
        + "; ".join(f"{name}: {algorithm_spec(name).summary}" for name in available_algorithms()),
    )
    t.add_argument(
        "--sharing",
        choices=["full", "none", "roles", *LEGACY_SHARING_FLAGS],
        default=None,
        help="network.sharing (the algorithm's default if not given); bilevel and individual "
        "are the old spellings of --algo bdps [--set bdps.levels=1]",
    )
    t.add_argument("--steps", type=int, default=None, help="env steps (training.total_steps)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument(
        "--logdir", default=None, help="default: <training.logdir>/<scenario>-<algorithm>-seed<S>"
    )
    t.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="config override, repeatable"
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --logdir (or the default logdir) from its checkpoint.pt; "
        "same scenario and overrides (--steps may grow)",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in the log directory (its metrics, checkpoint and events "
        "are deleted); without it such a directory is refused",
    )
    t.set_defaults(fn=_train)

    from bdps_agents.eval_cli import add_eval_parser, add_selector_value_parser

    add_eval_parser(sub, common)
    add_selector_value_parser(sub, common)

    x = sub.add_parser(
        "experiment", parents=[common], help="a grid of scenarios x methods x seeds (Ray)"
    )
    x.add_argument("config", help="experiment YAML file or shipped name (e.g. lbf-ablation)")
    add_grid_options(x)
    x.set_defaults(fn=experiment)

    pl = sub.add_parser(
        "plot", parents=[common], help="figures (mean +- 95%% CI across seeds) of a results dir"
    )
    add_plot_options(pl)
    pl.set_defaults(fn=plot)

    r = sub.add_parser(
        "render",
        parents=[common],
        help="a greedy episode of a checkpoint as a GIF (LBF, GRF, SMAX)",
    )
    r.add_argument("--checkpoint", required=True)
    r.add_argument("--out", default="episode.gif", help=".gif, or .png/.apng/.webp")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--max-steps", type=int, default=None)
    r.set_defaults(fn=_render)

    rp = sub.add_parser("reproduce", parents=[common], help="run a shipped experiment, plot it")
    rp.add_argument("name", nargs="?", help="e.g. lbf-ablation; none: --list")
    rp.add_argument("--list", action="store_true", help="the shipped experiments and their cost")
    add_grid_options(rp)
    rp.set_defaults(fn=reproduce)

    s = sub.add_parser("scenarios", parents=[common], help="list scenario presets")
    s.set_defaults(fn=_scenarios)
    add_options_command(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; a user mistake ends in one ``error:`` line and exit code 2 (with
    ``--debug``: the traceback)."""
    from bdps_agents.adapters import UnknownAdapterError
    from bdps_agents.algorithms.value_decomposition import NonFiniteError
    from bdps_agents.training import CheckpointError, RunDirError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if getattr(args, "debug", False):
        return args.fn(args)
    try:
        check_environment_variables()
        return args.fn(args)
    # ImportError: an optional simulator is not installed (the message gives the install command)
    except (
        ConfigError,
        FileNotFoundError,
        ImportError,
        UnknownAdapterError,
        CheckpointError,
        RunDirError,
        ResultsError,
        NonFiniteError,  # settings that make the losses diverge: the message names them
    ) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. a full disk or a read-only directory while writing
        print(f"error: {err} (--debug shows where)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
