"""Memory: what a replay buffer will take, whether it fits, and glibc's reuse of freed blocks.

A low-level module: the learner process (:mod:`bdps_agents.learner_process`, used by the
algorithm layer) calls :func:`reuse_freed_memory` in its child without importing the training
stack, and :mod:`bdps_agents.training.build` checks the replay buffer with
:func:`check_replay_memory` before allocating it.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import TYPE_CHECKING

import numpy as np

from bdps_agents.config import ConfigError

if TYPE_CHECKING:
    from bdps_agents.env_spec import EnvSpec


def replay_bytes_per_step(spec: EnvSpec) -> int:
    """Approximate bytes one stored env step takes in the replay buffer: the joint observation
    (obs, state, mask, alive), the joint action, reward, flags and a few info scalars."""
    obs = sum(int(np.prod(sp.shape)) * sp.dtype.itemsize for sp in spec.observation_space.values())
    return obs + 8 * spec.n_agents + 64


def machine_memory() -> int | None:
    """This machine's physical memory in bytes (None where it cannot be read: not POSIX)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_replay_memory(capacity_episodes: int, episode_limit: int, spec: EnvSpec) -> None:
    """Refuse a replay buffer that cannot fit in this machine's memory (Tianshou allocates it
    in full on the first write, so the run would die later, or swap)."""
    need = capacity_episodes * episode_limit * replay_bytes_per_step(spec)
    total = machine_memory()
    if total is None:  # no check
        return
    if need > 0.75 * total:
        fits = int(0.75 * total / (episode_limit * replay_bytes_per_step(spec)))
        raise ConfigError(
            f"replay.capacity_episodes={capacity_episodes} needs about {need / 2**30:.1f} GiB "
            f"({capacity_episodes} episodes x {episode_limit} steps x "
            f"{replay_bytes_per_step(spec)} bytes per step) but this machine has "
            f"{total / 2**30:.1f} GiB; at most {fits} episodes fit in 75% of it"
        )


def check_network_memory(hidden_dim: int, spec: EnvSpec) -> None:
    """Refuse a ``network.hidden_dim`` whose agent network cannot fit in this machine's memory,
    before PyTorch fails to allocate it. A lower bound, whatever the algorithm: one network's
    GRU (3 gates of H x (input + H) weights) and Q head (H x actions), in float32, four times
    over (weights, target copy, Adam's two moments)."""
    total = machine_memory()
    if total is None:
        return
    inputs = spec.obs_dim + spec.n_actions + spec.n_agents  # observation, last action, agent id
    weights = 3 * hidden_dim * (inputs + hidden_dim) + hidden_dim * spec.n_actions
    need = 4 * 4 * weights
    if need > 0.75 * total:
        raise ConfigError(
            f"network.hidden_dim={hidden_dim} needs at least {need / 2**30:.1f} GiB for the "
            f"agent network alone (weights, target copy and Adam's moments) but this machine "
            f"has {total / 2**30:.1f} GiB: use a smaller network.hidden_dim (the default is 64)"
        )


def reuse_freed_memory() -> bool:
    """Make glibc keep freed memory blocks of up to 64 MiB for reuse; True if it applied.

    An update allocates and frees tensors of a few MB each (input gates of every step, their
    gradients). glibc serves such blocks with ``mmap`` and unmaps them when freed, so every new
    one is fresh pages: one page fault per 4 KiB. Raising the mmap and trim thresholds keeps them
    in the heap for reuse: less time per update (measured: ``benchmarks/throughput.py``), at
    the price of a process that holds its peak memory. No effect off Linux/glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    mmap_ok = libc.mallopt(m_mmap_threshold, 64 << 20)
    return bool(mmap_ok and libc.mallopt(m_trim_threshold, 1 << 30))


# slots per episode when the env does not say how long its episodes last
DEFAULT_EPISODE_SLOTS = 1000
