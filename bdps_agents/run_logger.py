"""Run logging: TensorBoard + a tidy CSV + a console progress bar, as one Tianshou logger.

``RunLogger`` is a ``TensorboardLogger`` (so Tianshou's trainer drives it unchanged) that also
appends every logged scalar to ``metrics.csv`` as ``(scope, step, metric, value)`` rows -- ``step``
is always the total env step, warm-up included, also for update data (TensorBoard keeps
Tianshou's own axes: gradient steps for update data) -- keeps the
greedy test returns in memory for the learning curve, and moves a tqdm bar on every collect step.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from tianshou.utils import TensorboardLogger
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

# test-episode metrics shown on the progress bar when the env has them: SMAC/SMAX, GRF
PROGRESS_METRICS = {"win_rate": "win", "goal_score": "goal"}


class RunLogger(TensorboardLogger):
    def __init__(
        self,
        logdir: str | Path,
        total_steps: int,
        eps_fn: Any = None,
        progress: bool = True,
        training_interval: int = 1000,
        update_interval: int = 1000,
        test_metrics_fn: Any = None,
    ) -> None:
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            SummaryWriter(str(self.logdir)),
            training_interval=training_interval,
            update_interval=update_interval,
            write_flush=False,
        )
        self._csv_file = (self.logdir / "metrics.csv").open("w", newline="")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(["scope", "step", "metric", "value"])
        self.test_history: list[tuple[int, float, float]] = []  # (env_step, mean, std)
        # env steps taken before the trainer started (warm-up), added to the trainer's counter
        self.step_offset = 0
        self._eps_fn = eps_fn
        # called after each test: {name: mean over the test episodes}, e.g. {"win_rate": 0.4}
        self._test_metrics_fn = test_metrics_fn
        self.last_test_metrics: dict[str, float] = {}
        self._episodes = 0
        self._env_steps = 0  # the trainer's counter (tqdm's is frozen when the bar is disabled)
        self._recent_returns: deque[tuple[float, int]] = deque(maxlen=100)  # (mean, episodes)
        self._start = time.time()
        interactive = sys.stderr.isatty()
        self._bar = tqdm(
            total=total_steps,
            unit="step",
            disable=not progress,
            dynamic_ncols=True,
            smoothing=0.05,
            mininterval=0.5 if interactive else 30.0,  # logs of CI / batch jobs stay readable
        )

    # -- tianshou logger interface ------------------------------------------------------------
    def write(self, step_type: str, step: int, data: dict[str, Any]) -> None:
        super().write(step_type, step, data)
        scope = step_type.split("/")[0]
        csv_step = self._env_step_of(scope, step)
        for key, value in data.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self._csv.writerow([scope, csv_step, key, value])
        self._csv_file.flush()

    def _env_step_of(self, scope: str, step: int) -> int:
        """The total env step (warm-up included) for a row of ``scope`` logged at ``step``."""
        if scope == "update":  # Tianshou counts update data in gradient steps
            return self._env_steps + self.step_offset
        if scope in ("training", "train", "test"):  # the trainer's env steps, after warm-up
            return step + self.step_offset
        return step  # our own scopes (e.g. "final") are logged in total env steps

    def log_training_data(self, log_data: dict, step: int) -> None:
        n_episodes = int(log_data.get("n_collected_episodes", 0))
        self._episodes += n_episodes
        returns = log_data.get("returns_stat") or {}
        if n_episodes and returns.get("mean") is not None:
            self._recent_returns.append((float(returns["mean"]), n_episodes))
        self._env_steps = step
        self._bar.update(max(0, min(step, self._bar.total) - self._bar.n))
        postfix = {"episodes": self._episodes, "return": f"{self.recent_return:.3f}"}
        if self._eps_fn is not None:
            postfix["eps"] = f"{self._eps_fn(step):.3f}"
        postfix["test"] = f"{self.test_history[-1][1]:.3f}" if self.test_history else "-"
        for name, label in PROGRESS_METRICS.items():
            if name in self.last_test_metrics:
                postfix[label] = f"{self.last_test_metrics[name]:.2f}"
        self._bar.set_postfix(postfix, refresh=False)
        super().log_training_data(log_data, step)

    def log_test_data(self, log_data: dict, step: int) -> None:
        returns = log_data.get("returns_stat") or {}
        if returns and returns.get("mean") is not None:
            total = step + self.step_offset
            self.test_history.append(
                (total, float(returns["mean"]), float(returns.get("std", 0.0)))
            )
            self._csv.writerow(["test", total, "greedy_return", self.test_history[-1][1]])
            if self._test_metrics_fn is not None:
                self.last_test_metrics = self._test_metrics_fn()
                for name, value in self.last_test_metrics.items():
                    self.writer.add_scalar(f"test/{name}", value, global_step=step)
                    self._csv.writerow(["test", total, name, value])
        super().log_test_data(log_data, step)

    def log_metric(self, scope: str, step: int, name: str, value: float) -> None:
        """Extra scalars outside Tianshou's own scopes (e.g. final evaluation)."""
        self.write(f"{scope}/env_step", step, {name: value})

    def finalize(self) -> None:
        self._bar.close()
        self.writer.flush()
        self.writer.close()
        self._csv_file.close()
        super().finalize()

    @property
    def recent_return(self) -> float:
        """Mean training-episode return over the last collect steps (ε-greedy, not greedy)."""
        total = sum(n for _, n in self._recent_returns)
        return sum(m * n for m, n in self._recent_returns) / total if total else math.nan

    @property
    def env_steps(self) -> int:
        return self._env_steps

    @property
    def steps_per_second(self) -> float:
        return self._env_steps / max(time.time() - self._start, 1e-9)


def plot_learning_curve(
    history: list[tuple[int, float, float]], path: str | Path, title: str, episodes: int
) -> None:
    """Greedy test return vs env steps to a PNG: mean over the test episodes, with a band of
    ± one standard error of that mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4))
    if history:
        steps, mean, std = (np.array(c, dtype=float) for c in zip(*history, strict=True))
        sem = std / np.sqrt(max(episodes, 1))
        ax.plot(steps, mean, marker=".", label=f"greedy test return ({episodes} episodes)")
        ax.fill_between(steps, mean - sem, mean + sem, alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("team return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
