"""Process-wide switches read from environment variables: ``BDPS_FAST_PATHS`` (default on) turns
the learner's fast paths on or off, all together. Read when first used, not at import, so that a
wrong value is a :class:`~bdps_agents.config.ConfigError` naming the variable (``bdps`` checks it
up front: :func:`check_environment_variables`) instead of an import-time traceback.

The fast paths compute what their plain counterparts compute (the tests compare whole updates),
only faster; each is kept because ``benchmarks/fast_paths.py`` measures it on the whole update:

* the GRU recurrence of a training unroll as one autograd node with a hand-written backward
  (``networks/gru_sequence.py``; off: autograd through the steps);
* Adam as PyTorch's fused kernel (``algorithms/optim.py``; off: PyTorch's default Adam).
"""

from __future__ import annotations

import os
import warnings
from typing import TypeVar

from bdps_agents.config import ConfigError

T = TypeVar("T")

# the spellings of a yes/no variable
SWITCH_VALUES = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
}

# variables of earlier versions that no longer do anything: named once, so that nobody believes
# a setting is in force when it is not
REMOVED_VARIABLES = {
    "BDPS_CPU_MATMUL": "the oneDNN product path was removed (products are PyTorch's own)",
    "BDPS_NATIVE_KERNELS": "the compiled GRU kernels were removed; BDPS_FAST_PATHS=0 turns "
    "the remaining fast paths off",
    "BDPS_KERNEL_CACHE": "the compiled GRU kernels were removed (nothing is built or cached)",
}


def env_choice(name: str, choices: dict[str, T], default: T) -> T:
    """The value of environment variable ``name`` among ``choices`` (case and surrounding blanks
    ignored; unset or empty: ``default``); ``ConfigError`` naming the accepted values otherwise."""
    raw = os.environ.get(name, "")
    if not raw.strip():
        return default
    key = raw.strip().lower()
    if key not in choices:
        raise ConfigError(
            f"environment variable {name}={raw!r} is not one of {', '.join(choices)}: set it to "
            f"one of them, or unset it"
        )
    return choices[key]


# None: not chosen yet, BDPS_FAST_PATHS (read at the first use) decides
_fast_paths: bool | None = None


def fast_paths_enabled() -> bool:
    """Whether the fast paths are on: ``BDPS_FAST_PATHS`` (default on) until
    :func:`set_fast_paths` says otherwise."""
    global _fast_paths
    if _fast_paths is None:
        _fast_paths = env_choice("BDPS_FAST_PATHS", SWITCH_VALUES, True)
    return _fast_paths


def set_fast_paths(enabled: bool) -> bool:
    """Turn the fast paths on or off from now on, in this process; returns the previous setting.
    (An optimiser already built keeps its kind.)"""
    global _fast_paths
    previous, _fast_paths = fast_paths_enabled(), enabled
    return previous


def check_environment_variables() -> None:
    """Read every switch once, so that a wrong value stops ``bdps`` before anything runs; warn
    (one line each) about variables that no longer do anything."""
    fast_paths_enabled()
    for name, why in REMOVED_VARIABLES.items():
        if os.environ.get(name, "").strip():
            warnings.warn(f"{name} is set but has no effect: {why}; unset it", stacklevel=2)
