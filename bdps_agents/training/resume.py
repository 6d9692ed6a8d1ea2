"""Resuming a killed run from its checkpoint.

``train(cfg, logdir, resume=True)`` (``bdps train ... --resume``) continues a killed run from it:
the config must match the checkpoint's except ``training.total_steps`` (and the cosmetic
``training.progress``, ``training.logdir``, ``training.checkpoint_interval``); ``metrics.csv`` is
cut back to its length at the checkpoint and appended to; the trainer continues from the saved
epoch / env step / training step through Tianshou's own ``resume_from_log`` (the logger's
``restore_data``), so the ε schedule, a function of the trainer's env step, goes on where it was.
A finished run (no epoch of the budget left, and ``metrics.csv`` holds its ``final`` rows) is
not resumed: :func:`check_resume_progress` refuses it, saying to pass a larger ``--steps``
(resuming with the same budget would only evaluate it again and replace its final result); a run
killed after its last epoch but before its final evaluation is resumed to that evaluation.
The replay buffer is *not* saved (it can take GBs on big maps): a resumed run first refills it
with ``replay.warmup_episodes`` episodes played at the current ε; these env steps are counted in
the total (``metrics.csv``'s ``step``, like the warm-up) but not in the trainer's budget of
``training.total_steps``. Rows of scope ``resume`` (``eps``, ``refill_steps``) at the
checkpoint's env step mark each resume in ``metrics.csv``. The env workers' own random state is
not saved either: they are reseeded from (seed, env step), so a resumed run is a faithful
continuation, not a bitwise replay of an uninterrupted one.

The checkpoint file itself: :mod:`bdps_agents.training.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tianshou.algorithm.algorithm_base import policy_within_training_step

from bdps_agents.config import ConfigError, ExperimentConfig
from bdps_agents.training.build import Run
from bdps_agents.training.checkpoint import CHECKPOINT_NAME, CheckpointError, first_line
from bdps_agents.training.learner_state import load_algorithm_state, set_rng_states
from bdps_agents.training.plan import EpochPlan, collect_step
from bdps_agents.training.run_logger import RunLogger

# config fields a resumed run may change: the budget, and what does not touch learning
RESUMABLE_CHANGES = frozenset(
    {
        "training.total_steps",
        "training.progress",
        "training.logdir",
        "training.checkpoint_interval",
        "training.reuse_freed_memory",
        "training.overlap_learning",
        "training.device",  # where the updates run: a GPU run may resume on a CPU
    }
)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key != "kwargs":
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def config_differences(saved: ExperimentConfig, cfg: ExperimentConfig) -> dict[str, tuple]:
    """``field -> (saved value, new value)`` for the fields (dotted) in which ``cfg`` differs
    from ``saved`` beyond :data:`RESUMABLE_CHANGES`."""
    old = _flatten(saved.model_dump(mode="json"))
    new = _flatten(cfg.model_dump(mode="json"))
    return {
        k: (old.get(k), new.get(k))
        for k in sorted(old.keys() | new.keys())
        if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)
    }


def check_resumable(saved: ExperimentConfig, cfg: ExperimentConfig, path: Path) -> None:
    """Refuse to resume with a config that differs from the checkpoint's beyond
    :data:`RESUMABLE_CHANGES`, naming the differing fields."""
    differ = config_differences(saved, cfg)
    if differ:
        lines = "\n".join(f"  {k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in differ.items())
        raise ConfigError(
            f"cannot resume from {path}: the config differs from the checkpoint's in "
            f"{', '.join(differ)} (only {', '.join(sorted(RESUMABLE_CHANGES))} may change):\n"
            f"{lines}"
        )


# what RunLogger reads back from a checkpoint's progress note
_PROGRESS_COUNTERS = (
    "epoch",
    "env_step",
    "update_step",
    "total_env_step",
    "step_offset",
    "csv_bytes",
    "episodes",
)


def _has_final_row(metrics: Path) -> bool:
    """Whether ``metrics.csv`` holds a run's final evaluation (as ``experiment.is_finished``)."""
    if not metrics.is_file():
        return False
    with metrics.open(newline="", errors="replace") as f:
        return any(line.startswith("final,") for line in f)


def check_resume_progress(
    saved: dict[str, Any], cfg: ExperimentConfig, logdir: Path, path: Path
) -> None:
    """Refuse to resume from a checkpoint whose progress note is malformed, or a run that is
    finished: no epoch of ``cfg``'s budget is left and ``metrics.csv`` holds its final result
    (resuming would only evaluate it again and replace that result). A run killed between its
    last epoch and its final evaluation is not finished: resuming evaluates it."""
    note = saved["progress"]

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not isinstance(note, dict):
        bad = ["progress"]
    else:
        bad = [k for k in _PROGRESS_COUNTERS if not is_int(note.get(k))]
        last_log = note.get("last_log")
        if not isinstance(last_log, dict) or not all(
            is_int(last_log.get(k)) for k in ("training", "test", "update", "info")
        ):
            bad.append("last_log")
        history = note.get("test_history")
        if not isinstance(history, list) or not all(
            isinstance(t, list | tuple) and len(t) == 3 for t in history
        ):
            bad.append("test_history")
    if bad:
        raise CheckpointError(
            f"cannot resume from {path}: its progress note lacks or garbles {', '.join(bad)} "
            "(the file was not written by bdps train); it can still be evaluated"
        )
    tc = cfg.training
    plan = EpochPlan.of(
        tc.total_steps,
        tc.test_interval,
        collect_step(tc.steps_per_update, cfg.env.num_train_envs),
        done_steps=note["env_step"],
        done_epochs=note["epoch"],
    )
    if plan.epochs_left > 0 or not _has_final_row(logdir / "metrics.csv"):
        return
    raise CheckpointError(
        f"cannot resume {logdir}: the run is finished ({note['env_step']} training env steps "
        f"done for training.total_steps={tc.total_steps}, final result in metrics.csv); to "
        f"train it further, resume with --steps (training.total_steps) greater than "
        f"{note['env_step']}"
    )


def restore_run(run: Run, data: dict[str, Any], path: str | Path = "(in memory)") -> None:
    """Load a checkpoint's learner state into a freshly built ``run``: networks, target networks,
    optimiser (Adam moments), gradient-step count, ε, and random generators. Raises
    :class:`CheckpointError`, naming ``path``, for a state that does not fit ``run``."""
    algorithm = run.algorithm
    load_algorithm_state(algorithm, data["algorithm"], path)
    try:
        for scheduler, state in zip(
            algorithm.lr_schedulers, data.get("lr_schedulers", []), strict=False
        ):
            scheduler.load_state_dict(state)
        if "_extra_state" not in data["algorithm"]:  # older checkpoints kept the count beside it
            algorithm.num_updates = int(data.get("num_updates", 0))
        if "eps_training" in data:
            run.policy.set_eps_training(float(data["eps_training"]))
        if "rng" in data:
            set_rng_states(run, data["rng"])
    except (KeyError, IndexError, OverflowError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"checkpoint {path} holds an unusable learner state (schedulers, ε or random "
            f"generators): {first_line(err)}"
        ) from None


def _reseed_envs(run: Run, seed: int, env_step: int) -> None:
    """New env seeds for a resumed run: the killed run's env random state is lost, and
    reusing the initial seeds would replay the run's first episodes."""
    seq = np.random.SeedSequence([seed, env_step])
    train_seed, test_seed = (int(s) for s in seq.generate_state(2) % (2**31 - 2**16))
    run.train_envs.seed(train_seed)
    run.test_envs.seed(test_seed)


def resume_run(
    cfg: ExperimentConfig, run: Run, logger: RunLogger, saved: dict[str, Any], refill: bool
) -> None:
    """Restore the learner from ``saved``, then refill the (unsaved) replay buffer with
    ``replay.warmup_episodes`` episodes at the current ε (skipped when no training is left)."""
    note = saved["progress"]
    # train() reads the checkpoint from logdir / CHECKPOINT_NAME, the logger's logdir
    restore_run(run, saved, logger.logdir / CHECKPOINT_NAME)
    _reseed_envs(run, cfg.training.seed, note["total_env_step"])
    eps = run.schedule(note["env_step"])  # what training_fn sets at this trainer env step
    refill_steps = 0
    if refill:
        with policy_within_training_step(run.policy):
            run.policy.set_eps_training(eps)
            run.train_collector.reset()
            stats = run.train_collector.collect(n_episode=cfg.replay.warmup_episodes)
        refill_steps = stats.n_collected_steps
        logger.step_offset += refill_steps
    total = note["total_env_step"]
    logger.log_metric("resume", total, "eps", eps)
    logger.log_metric("resume", total, "refill_steps", refill_steps)
    print(
        f"resumed from checkpoint at env step {total} (epoch {note['epoch']}, trainer env step "
        f"{note['env_step']}, {run.algorithm.num_updates} gradient steps), eps {eps:.4f}; "
        f"replay refilled with {refill_steps} env steps",
        flush=True,
    )
