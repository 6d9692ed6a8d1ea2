"""Greedy episodes: the test of a run, and the evaluation of a checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bdps_agents.training.build import Run, build_run
from bdps_agents.training.checkpoint import check_env_rebuildable, load_checkpoint
from bdps_agents.training.learner_state import load_algorithm_state


def greedy_return(run: Run, episodes: int) -> tuple[float, float]:
    """Mean and std of the team return over greedy (ε = eps_test) test episodes.

    The episodes' metric means (e.g. ``win_rate``) wait in ``run.test_metrics.pop_means()``.
    """
    run.test_metrics.pop_means()  # drop values from episodes collected before this call
    run.test_collector.reset()
    stats = run.test_collector.collect(n_episode=episodes)
    return float(np.mean(stats.returns)), float(np.std(stats.returns))


@contextmanager
def checkpoint_run(checkpoint: str | Path, seed: int | None = None) -> Iterator[Run]:
    """The run of a checkpoint, built on the CPU with its trained networks; closed after."""
    cfg, data = load_checkpoint(checkpoint)
    check_env_rebuildable(data, checkpoint)
    if seed is not None:
        cfg.training.seed = seed
    # greedy episodes take no gradient step: no learner elsewhere, on any machine (a checkpoint
    # of a GPU run evaluates where there is none)
    cfg.training.device, cfg.training.overlap_learning = "cpu", False
    run = build_run(cfg)
    try:
        load_algorithm_state(run.algorithm, data["algorithm"], checkpoint)
        yield run
    finally:
        run.close()


def evaluate(
    checkpoint: str | Path, episodes: int = 32, seed: int | None = None
) -> dict[str, float]:
    """Greedy episodes with a trained checkpoint: mean/std team return and episode metrics
    (e.g. ``win_rate``)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    with checkpoint_run(checkpoint, seed) as run:
        mean, std = greedy_return(run, episodes)
        metrics = run.test_metrics.pop_means()
    return {"episodes": episodes, "return_mean": mean, "return_std": std, **metrics}
