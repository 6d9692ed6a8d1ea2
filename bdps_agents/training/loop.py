"""The driver: :func:`train` runs a :class:`~bdps_agents.training.build.Run` with Tianshou's
``OffPolicyTrainer`` and writes TensorBoard + CSV logs, a learning-curve PNG and checkpoints."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tianshou.trainer import OffPolicyTrainerParams

from bdps_agents.algorithms import run_label
from bdps_agents.algorithms.value_decomposition import NonFiniteError
from bdps_agents.config import ExperimentConfig
from bdps_agents.exploration import warmup
from bdps_agents.training.build import Run, build_run
from bdps_agents.training.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    atomic_write,
    load_checkpoint,
    remove_stale_temp_files,
)
from bdps_agents.training.evaluation import greedy_return
from bdps_agents.training.learner_state import save_checkpoint
from bdps_agents.training.plan import EpochPlan, collect_step
from bdps_agents.training.resume import check_resumable, check_resume_progress, resume_run
from bdps_agents.training.run_dir import RunDirError, default_logdir, run_dir_lock, run_files
from bdps_agents.training.run_logger import RunLogger, plot_learning_curve
from bdps_agents.training.selector_value import selector_value_metrics


@dataclass
class TrainResult:
    logdir: Path
    checkpoint: Path
    env_steps: int
    final_greedy_return: float
    test_history: list[tuple[int, float, float]]
    steps_per_second: float
    final_metrics: dict[str, float] = field(default_factory=dict)  # e.g. win_rate


class EnvWorkerError(RuntimeError):
    """An environment in a vector-env worker process failed (the worker died)."""


def train(
    cfg: ExperimentConfig,
    logdir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train ``cfg`` into ``logdir`` (default ``<training.logdir>/<scenario>-<algorithm>-seed<S>``).

    ``resume=True`` continues the run from ``<logdir>/checkpoint.pt`` (see
    :mod:`bdps_agents.training.resume`: what is restored, the replay-buffer refill, how
    metrics.csv is continued). It raises
    ``FileNotFoundError`` when there is no checkpoint, :class:`CheckpointError` for an unusable
    one and ``ConfigError`` when ``cfg`` differs from the checkpoint's config.

    A log directory that holds a run is never replaced silently: without ``resume`` it raises
    :class:`RunDirError` unless ``overwrite=True``, which deletes that run's files (metrics,
    checkpoint, config, curve, TensorBoard events) once the new run is built. One run at a time
    writes to a directory (:func:`run_dir_lock`).
    """
    logdir = Path(logdir or default_logdir(cfg))
    if resume and overwrite:
        raise RunDirError("--resume continues the run in a log directory, --overwrite replaces it")
    with run_dir_lock(logdir):
        return _train_in(cfg, logdir, resume, overwrite)


def _train_in(cfg: ExperimentConfig, logdir: Path, resume: bool, overwrite: bool) -> TrainResult:
    """:func:`train` with the log directory locked."""
    checkpoint = logdir / CHECKPOINT_NAME
    saved: dict[str, Any] | None = None
    if resume:
        if not checkpoint.is_file():
            raise FileNotFoundError(
                f"cannot resume: no checkpoint at {checkpoint} (train without --resume first, "
                f"or pass the run's --logdir)"
            )
        saved_cfg, saved = load_checkpoint(checkpoint)
        if "progress" not in saved:
            raise CheckpointError(
                f"cannot resume from {checkpoint}: it holds no training progress (written by an "
                "older bdps-agents); it can still be evaluated"
            )
        check_resumable(saved_cfg, cfg, checkpoint)
        check_resume_progress(saved, cfg, logdir, checkpoint)
    else:
        existing = run_files(logdir)
        if existing and not overwrite:
            names = ", ".join(
                sorted({"TensorBoard events" if "tfevents" in p.name else p.name for p in existing})
            )
            raise RunDirError(
                f"{logdir} already holds a run ({names}): pass --resume to continue it, "
                "--overwrite to replace it, or another --logdir"
            )
    run = build_run(cfg)  # a config that cannot be built leaves the directory as it was
    try:
        if overwrite:
            for path in run_files(logdir):
                path.unlink()
        remove_stale_temp_files(checkpoint)
        atomic_write(
            logdir / "config.json", json.dumps(cfg.model_dump(mode="json"), indent=2).encode()
        )
        return _train(cfg, run, logdir, checkpoint, saved)
    except NonFiniteError as exc:
        steps = run.train_collector.collect_step
        kept = (
            f"the last good checkpoint {checkpoint} is kept"
            if checkpoint.is_file()
            else ("no checkpoint had been written yet")
        )
        raise NonFiniteError(
            f"training stopped at env step {steps}: {exc}; {kept}. Try a lower algorithm.lr "
            "or algorithm.max_grad_norm, or check the scale of the rewards."
        ) from exc
    except (EOFError, BrokenPipeError, ConnectionResetError) as exc:
        if cfg.env.vector_env == "dummy":
            raise
        run.close(quietly=True)  # the other workers; the dead one cannot be told to close
        raise EnvWorkerError(
            f"an environment worker ({cfg.env.vector_env}) died while the trainer waited on it "
            f"({type(exc).__name__}): the env raised inside the worker process, whose traceback "
            "is printed above on stderr. Rerun with --set env.vector_env=dummy to get the "
            f"error in this process. The last checkpoint ({checkpoint}) is kept."
        ) from exc
    finally:
        run.close(quietly=True)


def _train(
    cfg: ExperimentConfig,
    run: Run,
    logdir: Path,
    checkpoint: Path,
    saved: dict[str, Any] | None,
) -> TrainResult:
    tc = cfg.training
    policy = run.policy
    note = saved["progress"] if saved is not None else None
    # one gradient step per collect step; collect whole vector steps (a multiple of the env
    # count), so steps_per_update is rounded up to that multiple
    steps_per_collect = collect_step(tc.steps_per_update, cfg.env.num_train_envs)
    plan = EpochPlan.of(
        tc.total_steps,
        tc.test_interval,
        steps_per_collect,
        done_steps=note["env_step"] if note else 0,
        done_epochs=note["epoch"] if note else 0,
    )
    # before the progress bar appears; also without one (--no-progress): what the run will do
    print(plan.describe(tc.total_steps, tc.steps_per_update), flush=True)

    def test_metrics() -> dict[str, float]:
        """The test episodes' metrics, and the selector value where asked for."""
        means = run.test_metrics.pop_means()
        return {**means, **selector_value_metrics(run, tc.selector_value_episodes, tc.seed)}

    logger = RunLogger(
        logdir,
        plan.total,
        eps_fn=run.schedule,
        progress=tc.progress,
        training_interval=tc.log_interval,
        update_interval=max(1, tc.log_interval // tc.steps_per_update),  # counted in updates
        test_metrics_fn=test_metrics,
        checkpoint_interval=tc.checkpoint_interval,
        resume=note,
    )
    try:
        if saved is None:
            print(
                f"warm-up: {cfg.replay.warmup_episodes} episodes of random available actions "
                "before learning (in metrics.csv's env steps, not in the budget) ...",
                flush=True,
            )
            warm = warmup(run.train_collector, n_episode=cfg.replay.warmup_episodes)
            logger.step_offset = warm.n_collected_steps
        else:
            resume_run(cfg, run, logger, saved, refill=plan.epochs_left > 0)

        def training_fn(epoch: int, env_step: int) -> None:
            policy.set_eps_training(run.schedule(env_step))

        def test_fn(epoch: int, env_step: int | None) -> None:
            run.sync_learner()  # test the networks of the last gradient step

        def save_checkpoint_fn(epoch: int, env_step: int, update_step: int) -> str:
            # called by RunLogger.save_data at an epoch end, right after it noted the progress
            run.sync_learner(full_state=True)
            progress = logger.epoch_end()
            save_checkpoint(checkpoint, run, progress["total_env_step"], progress)
            return str(checkpoint)

        start = time.time()
        run.algorithm.run_training(
            OffPolicyTrainerParams(
                training_collector=run.train_collector,
                test_collector=run.test_collector,
                max_epochs=plan.max_epochs,
                epoch_num_steps=plan.epoch_steps,
                collection_step_num_env_steps=steps_per_collect,
                update_step_num_gradient_steps_per_sample=1.0 / steps_per_collect,
                batch_size=cfg.replay.batch_episodes,
                test_step_num_episodes=tc.test_episodes,
                training_fn=training_fn,
                test_fn=test_fn,
                save_checkpoint_fn=save_checkpoint_fn,
                resume_from_log=saved is not None,
                logger=logger,
                verbose=False,
                show_progress=False,
                test_in_training=False,
            )
        )
        run.sync_learner(full_state=True)
        elapsed = time.time() - start
        steps_per_second = logger.new_env_steps / max(elapsed, 1e-9)
        env_steps = logger.total_env_steps
        final_mean, _ = greedy_return(run, tc.test_episodes)  # fresh episodes, after training
        final_metrics = test_metrics()
        logger.log_metric("final", env_steps, "greedy_return", final_mean)
        for name, value in final_metrics.items():
            logger.log_metric("final", env_steps, name, value)
        # the learner as it was at the last epoch end (nothing learns after it): resuming from
        # this checkpoint with more total_steps cuts metrics.csv back to that epoch end
        save_checkpoint(checkpoint, run, env_steps, logger.epoch_end())
        label = run_label(cfg)
        title = f"{cfg.scenario} ({label}, seed {tc.seed})"
        plot_learning_curve(
            logger.test_history, logdir / "learning_curve.png", title, tc.test_episodes
        )
    finally:
        logger.finalize()
    return TrainResult(
        logdir,
        checkpoint,
        env_steps,
        final_mean,
        logger.test_history,
        steps_per_second,
        final_metrics,
    )
