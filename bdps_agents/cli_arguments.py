"""Checks of ``bdps`` command-line values that argparse's types do not make: each mistake is an
:class:`ArgumentValueError`, which ``bdps_agents.cli.main`` prints as one ``error:`` line."""

from __future__ import annotations

import argparse
import math

from bdps_agents.config import SEED_MAX, ConfigError


class ArgumentValueError(ConfigError):
    """A command-line value the command cannot use; ``main()`` prints it as one ``error:`` line
    (a ``ConfigError``, which it already catches)."""


def check_seed(seed: int | None) -> None:
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise ArgumentValueError(f"--seed must be an integer from 0 to {SEED_MAX}, got {seed}")


def check_positive(option: str, value: int | None, unit: str) -> None:
    if value is not None and value < 1:
        raise ArgumentValueError(f"{option} must be a positive number of {unit}, got {value}")


def seed_list(text: str) -> list[int]:
    """``--seeds 0,1,2``."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers such as 0,1,2, got {text!r}"
        ) from None
    return seeds


def finite_step(text: str) -> float:
    """``--max-step``: a finite env step >= 0."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite env step >= 0, got {text!r}")
    return value
