"""Run logging: TensorBoard + a tidy CSV + a console progress bar, as one Tianshou logger.

``RunLogger`` is a ``TensorboardLogger`` (so Tianshou's trainer drives it unchanged) that also
appends every logged scalar to ``metrics.csv`` as ``(scope, step, metric, value)`` rows -- ``step``
is always the total env step, warm-up included, also for update and epoch-info data
(TensorBoard keeps Tianshou's own axes: training steps for update data, epochs for info) --
keeps the greedy test returns in memory for the learning curve, and moves a tqdm bar on every
collect step.

Checkpoints: Tianshou's trainer calls :meth:`RunLogger.save_data` at the end of every epoch,
before the epoch's test. The logger notes there where the run stands (:meth:`epoch_end`: trainer
counters, test history, the length of ``metrics.csv`` -- flushed and fsynced) and calls the
trainer's ``save_checkpoint_fn`` when ``checkpoint_interval`` env steps have passed since the
previous checkpoint. A logger built with ``resume=`` (that note, read back from a checkpoint)
cuts ``metrics.csv`` back to the noted length -- dropping every row logged after the checkpoint,
a torn last line included, so the resumed run appends without duplicates -- and hands the
trainer its counters through :meth:`restore_data` (``resume_from_log=True``).
"""

from __future__ import annotations

import csv
import math
import os
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

CSV_HEADER = ["scope", "step", "metric", "value"]


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (best effort on odd platforms)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a platform that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def cut_metrics_csv(path: Path, offset: int, last_step: int) -> None:
    """Bring ``metrics.csv`` back to what it held when a checkpoint was written.

    ``offset`` is its length then (fsynced before the checkpoint), so it is normally just cut
    there. A file shorter than that was replaced or damaged behind our back: then keep its
    well-formed rows with ``step <= last_step`` (not the ``final`` ones, nor the ``test``/``resume``
    rows at ``last_step``, which the resumed run logs again), written to a new file and renamed.
    """
    if path.is_file() and path.stat().st_size >= offset > 0:
        with path.open("r+b") as f:
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())
        return
    rows = []
    if path.is_file():
        text = path.read_text(errors="replace")
        lines = text.split("\n")
        if not text.endswith("\n"):
            lines = lines[:-1]  # a torn last line
        for row in csv.reader(lines):
            if len(row) != 4 or row == CSV_HEADER:
                continue
            try:
                step = int(row[1])
                float(row[3])
            except ValueError:
                continue
            redone = row[0] == "final" or (row[0] in ("test", "resume") and step == last_step)
            if step <= last_step and not redone:
                rows.append(row)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


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
        checkpoint_interval: int | None = None,
        resume: dict[str, Any] | None = None,
    ) -> None:
        """``checkpoint_interval``: env steps between calls of the trainer's
        ``save_checkpoint_fn`` (None: never). ``resume``: the :meth:`epoch_end` note of the
        checkpoint a run resumes from."""
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        # after a resume, TensorBoard hides what the killed run logged past the checkpoint on
        # the env-step axis (training/test scalars); metrics.csv is cut exactly (see above)
        purge_step = resume["env_step"] if resume else None
        super().__init__(
            SummaryWriter(str(self.logdir), purge_step=purge_step),
            training_interval=training_interval,
            update_interval=update_interval,
            write_flush=False,
        )
        self.checkpoint_interval = checkpoint_interval
        csv_path = self.logdir / "metrics.csv"
        if resume:
            cut_metrics_csv(csv_path, resume["csv_bytes"], resume["total_env_step"])
            self._csv_file = csv_path.open("a", newline="")
        else:
            self._csv_file = csv_path.open("w", newline="")
        self._csv = csv.writer(self._csv_file)
        if not resume:
            self._csv.writerow(CSV_HEADER)
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
        # (epoch, env_step, update_step) handed to the trainer by restore_data
        self._restored = (0, 0, 0)
        self._last_checkpoint_step = 0  # trainer env step of the last checkpoint
        self._epoch_end: dict[str, Any] | None = None
        interactive = sys.stderr.isatty()
        self._bar = tqdm(
            total=total_steps,
            unit="step",
            disable=not progress,
            dynamic_ncols=True,
            smoothing=0.05,
            mininterval=0.5 if interactive else 30.0,  # logs of CI / batch jobs stay readable
        )
        if resume:
            self._restore(resume)
        self._start_env_steps = self._env_steps

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
        if scope in ("update", "info"):  # Tianshou's axes: gradient steps, epochs
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
        if not self._csv_file.closed:
            self._csv_file.flush()
            os.fsync(self._csv_file.fileno())
            self._csv_file.close()
        super().finalize()

    # -- checkpoints ------------------------------------------------------------------------------
    def csv_bytes(self) -> int:
        """Length of ``metrics.csv`` now, after flushing it to disk (fsync)."""
        self._csv_file.flush()
        os.fsync(self._csv_file.fileno())
        return os.fstat(self._csv_file.fileno()).st_size

    def note_epoch_end(self, epoch: int, env_step: int, update_step: int) -> dict[str, Any]:
        """Note where the run stands at the end of an epoch (before its test)."""
        self._epoch_end = {
            "epoch": epoch,
            "env_step": env_step,  # the trainer's counter (after warm-up)
            "update_step": update_step,  # the trainer's training steps (collect + update)
            "total_env_step": env_step + self.step_offset,
            "step_offset": self.step_offset,
            "csv_bytes": self.csv_bytes(),
            "test_history": list(self.test_history),
            "episodes": self._episodes,
            "last_checkpoint_step": self._last_checkpoint_step,
            "last_log": {
                "training": self.last_log_training_step,
                "test": self.last_log_test_step,
                "update": self.last_log_update_step,
                "info": self.last_log_info_step,
            },
        }
        return self._epoch_end

    def epoch_end(self) -> dict[str, Any]:
        """The note of the last epoch end (of the checkpoint resumed from, before the first)."""
        if self._epoch_end is None:
            raise RuntimeError("no epoch has ended yet")
        return self._epoch_end

    def _restore(self, note: dict[str, Any]) -> None:
        self._restored = (note["epoch"], note["env_step"], note["update_step"])
        self.step_offset = note["step_offset"]
        self.test_history = [tuple(t) for t in note["test_history"]]
        self._episodes = note["episodes"]
        self._env_steps = note["env_step"]
        self._last_checkpoint_step = note["env_step"]
        last = note["last_log"]
        self.last_log_training_step = last["training"]
        self.last_log_test_step = last["test"]
        self.last_log_update_step = last["update"]
        self.last_log_info_step = last["info"]
        self._bar.update(max(0, min(self._env_steps, self._bar.total) - self._bar.n))
        self._epoch_end = dict(note)

    def save_data(
        self,
        epoch: int,
        env_step: int,
        update_step: int,
        save_checkpoint_fn: Any = None,
    ) -> None:
        """Called by the trainer at each epoch end: note it; checkpoint when one is due."""
        self.note_epoch_end(epoch, env_step, update_step)
        if (
            save_checkpoint_fn is not None
            and self.checkpoint_interval is not None
            and env_step - self._last_checkpoint_step >= self.checkpoint_interval
        ):
            self._last_checkpoint_step = env_step
            self._epoch_end["last_checkpoint_step"] = env_step  # type: ignore[index]
            save_checkpoint_fn(epoch, env_step, update_step)

    def restore_data(self) -> tuple[int, int, int]:
        """(epoch, env_step, update_step) of the checkpoint resumed from, for the trainer's
        ``resume_from_log``; zeros for a fresh run. (Tianshou's TensorboardLogger reads them back
        from the event files instead, which are neither fsynced nor in step with a checkpoint.)"""
        return self._restored

    @property
    def recent_return(self) -> float:
        """Mean training-episode return over the last collect steps (ε-greedy, not greedy)."""
        total = sum(n for _, n in self._recent_returns)
        return sum(m * n for m, n in self._recent_returns) / total if total else math.nan

    @property
    def env_steps(self) -> int:
        return self._env_steps

    @property
    def total_env_steps(self) -> int:
        """The trainer's env steps plus those collected outside it (warm-up, resume refills)."""
        return self._env_steps + self.step_offset

    @property
    def new_env_steps(self) -> int:
        """The trainer's env steps taken in this process (since the resume, if any)."""
        return self._env_steps - self._start_env_steps

    @property
    def steps_per_second(self) -> float:
        """The trainer's env steps per second, in this process (since a resume)."""
        return self.new_env_steps / max(time.time() - self._start, 1e-9)


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
