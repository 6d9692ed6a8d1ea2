"""Process-wide switches read from environment variables (``BDPS_CPU_MATMUL``,
``BDPS_NATIVE_KERNELS``): read when first used, not at import, so that a wrong value is a
:class:`~bdps_agents.config.ConfigError` naming the variable (``bdps`` checks them up front:
:func:`check_environment_variables`) instead of an import-time traceback."""

from __future__ import annotations

import os
from typing import TypeVar

from bdps_agents.config import ConfigError

T = TypeVar("T")

# the spellings of a yes/no variable
SWITCH_VALUES = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
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


def check_environment_variables() -> None:
    """Read every switch once, so that a wrong value stops ``bdps`` before anything runs."""
    from bdps_agents.networks import gemm, native

    gemm.cpu_backend()
    native.native_kernels_enabled()
