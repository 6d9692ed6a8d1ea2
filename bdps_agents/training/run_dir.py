"""A run's log directory: its default name, the files a run writes there, and its lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from bdps_agents.algorithms import run_label
from bdps_agents.config import ExperimentConfig
from bdps_agents.training.checkpoint import CHECKPOINT_NAME


def default_logdir(cfg: ExperimentConfig) -> Path:
    """``<training.logdir>/<scenario>-<algorithm label>-seed<S>`` (``AlgorithmSpec.label``:
    ``bdps``, ``qmix-none``, ...): methods and seeds of one scenario
    never share a directory."""
    label = run_label(cfg)
    name = f"{cfg.scenario.replace('/', '_')}-{label}-seed{cfg.training.seed}"
    return Path(cfg.training.logdir) / name


# what a run writes into its log directory (RunDirError, --overwrite)
RUN_FILE_PATTERNS = (
    "metrics.csv",
    CHECKPOINT_NAME,
    "config.json",
    "learning_curve.png",
    "events.out.tfevents.*",
)


def run_files(logdir: Path) -> list[Path]:
    """The files of a run in ``logdir`` (none if it does not exist)."""
    if not logdir.is_dir():
        return []
    return [p for pattern in RUN_FILE_PATTERNS for p in logdir.glob(pattern) if p.is_file()]


class RunDirError(RuntimeError):
    """A log directory that cannot be used: it holds another run, another process is writing
    to it, or it cannot be created or written."""


@contextlib.contextmanager
def run_dir_lock(
    logdir: Path, holder: str = "bdps run", option: str = "--logdir"
) -> Iterator[None]:
    """Hold an exclusive lock on ``logdir`` (created if needed) while a run writes to it
    (``holder``, ``option``: what the messages call the locking process, and the option that
    chooses the directory: an experiment locks its results directory too).

    ``flock`` on ``<logdir>/.lock``: the kernel drops it when the process dies (kill -9
    included), so a crashed run never leaves a stale lock behind. The file keeps the holder's
    pid for the message. A directory made here that holds nothing else at the end (the run
    failed before writing) is removed again."""
    what = "log" if option == "--logdir" else "results"
    try:  # TensorBoard writes its paths as UTF-8: a name with other bytes fails only then
        str(logdir).encode("utf-8")
    except UnicodeEncodeError:
        raise RunDirError(
            f"cannot use {str(logdir)!r} as the {what} directory: its name is not valid UTF-8 "
            f"(TensorBoard cannot write there): pick another {option}"
        ) from None
    created = not logdir.exists()
    try:
        logdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(logdir / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise RunDirError(
            f"cannot use {logdir} as the {what} directory ({err.strerror}): pick another {option}"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunDirError(
                f"{logdir} is in use by another {holder} (pid {pid}): wait for it to end "
                f"or pick another {option}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        if created and [p.name for p in logdir.iterdir()] == [".lock"]:
            (logdir / ".lock").unlink()
            logdir.rmdir()
        os.close(fd)  # releases the lock
