"""Shared test fixtures, hooks and markers.

Tests take what they share from here as fixtures (``small_lbf``, ``tiny_run``, ``config_with``,
``small_lbf_config``, ``same_nested``) and mark what needs an optional extra with
``@pytest.mark.requires(module=..., extra=...)``; nothing imports this module.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from bdps_agents.algorithms import algorithm_variants
from bdps_agents.config import ExperimentConfig, build_config
from bdps_agents.presets import merge_overrides


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "starts_jax: runs jax in the test process (run last)")
    config.addinivalue_line(
        "markers",
        "requires(module, extra): needs the optional `module` (pip extra `extra`): skipped "
        "without it, failed instead when $BDPS_REQUIRE lists `extra`",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``starts_jax`` run after all others (in their order): once jax runs in the
    process, every later test that forks workers gets jax's fork warning (and risks a deadlock).
    The adapter conformance suite, which comes first by name, marks its SMAX rows so. Tests that
    need a missing optional extra are marked skipped first (:func:`_skip_missing_optional`)."""
    _skip_missing_optional(items)
    items.sort(key=lambda item: item.get_closest_marker("starts_jax") is not None)


# A tiny LBF run (6x6, 2 agents, 1 food; 2 envs, small replay) for pipeline-level tests: the
# `small_lbf` fixture (tests take it from there; conftest is not imported).
_SMALL_LBF: dict[str, Any] = {
    "env": {
        "adapter": "lbf",
        "kwargs": {"task": "6x6-2p-1f"},
        "num_train_envs": 2,
        "num_test_envs": 2,
    },
    "replay": {"capacity_episodes": 50, "batch_episodes": 4, "warmup_episodes": 4},
    "network": {"hidden_dim": 16},
    "training": {"progress": False, "test_episodes": 2},
}


# The same tiny run as dotted overrides, for experiment grids and `--set` lists: `tiny_run`.
_TINY_RUN: dict[str, Any] = {
    "env.num_train_envs": 2,
    "env.num_test_envs": 2,
    "replay.capacity_episodes": 40,
    "replay.batch_episodes": 4,
    "replay.warmup_episodes": 2,
    "network.hidden_dim": 16,
    "training.test_interval": 100,
    "training.test_episodes": 2,
    "training.steps_per_update": 20,
    "training.log_interval": 20,
}


@pytest.fixture(scope="module")
def small_lbf() -> dict[str, Any]:
    """The tiny LBF run as a config dict (a deep copy for each test module, so that module-scoped
    fixtures can use it too and no module's change reaches another)."""
    return copy.deepcopy(_SMALL_LBF)


@pytest.fixture(scope="module")
def tiny_run() -> dict[str, Any]:
    """The tiny run as dotted overrides (a copy for each test module)."""
    return dict(_TINY_RUN)


def _config_with(base: dict[str, Any], **sections: dict[str, Any]) -> ExperimentConfig:
    data = copy.deepcopy(base)
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return build_config(data)


@pytest.fixture(scope="session")
def config_with() -> Callable[..., ExperimentConfig]:
    """``config_with(base, **sections)``: ``base`` with some sections updated key by key,
    validated (``base`` itself is not changed)."""
    return _config_with


def _same_nested(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_same_nested(a[k], b[k]) for k in a)
        )
    if isinstance(a, list | tuple):
        return (
            isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(_same_nested(x, y) for x, y in zip(a, b, strict=True))
        )
    return bool(np.array_equal(a, b))


@pytest.fixture(scope="session")
def same_nested() -> Callable[[Any, Any], bool]:
    """``same_nested(a, b)``: whether two nested dict/list/tuple structures of arrays and scalars
    are exactly equal (trajectories of an env under a seed, for determinism tests)."""
    return _same_nested


# ------------------------------------------------------------------ optional extras
def _missing_optional(module: str, extra: str) -> str | None:
    """Why tests that need the optional ``module`` cannot run, or ``None`` if it is installed.

    Uses ``find_spec``: importing e.g. jaxmarl at collection would start jax in every test.
    """
    if importlib.util.find_spec(module) is not None:
        return None
    return f"{module} is not installed (pip install 'bdps-agents[{extra}]')"


def _required(extra: str) -> bool:
    return extra in os.environ.get("BDPS_REQUIRE", "").split(",")


def _missing_requirements(item: pytest.Item) -> list[tuple[str, str]]:
    """``(extra, why)`` for each ``requires`` mark of ``item`` whose module is not installed."""
    out = []
    for mark in item.iter_markers("requires"):
        named = dict(zip(("module", "extra"), mark.args, strict=False)) | mark.kwargs
        message = _missing_optional(named["module"], named["extra"])
        if message is not None:
            out.append((named["extra"], message))
    return out


def _skip_missing_optional(items: list[pytest.Item]) -> None:
    """``@pytest.mark.requires(module=..., extra=...)`` (on a test, a ``pytest.param`` or a whole
    module as ``pytestmark``): the test is skipped when the optional ``module`` is not installed
    -- unless ``extra`` is listed in ``$BDPS_REQUIRE`` (comma-separated; CI sets it, so that the
    tests of an environment it installed can never be skipped by accident): then it fails
    (:func:`pytest_runtest_setup`). Test modules so marked import nothing of ``module`` at the
    top, so that they collect without it."""
    for item in items:
        for extra, message in _missing_requirements(item):
            if not _required(extra):
                item.add_marker(pytest.mark.skip(reason=message))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that needs an optional extra that ``$BDPS_REQUIRE`` lists, not installed: fails
    before its fixtures are set up."""
    for extra, message in _missing_requirements(item):
        if _required(extra):
            pytest.fail(f"{message}, but BDPS_REQUIRE lists {extra!r}", pytrace=False)


# ------------------------------------------------------------------ registered algorithms
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # a test taking `algorithm_variant` runs once per registered algorithm variant
    if "algorithm_variant" in metafunc.fixturenames:
        variants = algorithm_variants()  # the registry's: label -> dotted overrides
        metafunc.parametrize("algorithm_variant", list(variants.values()), ids=list(variants))


@pytest.fixture
def small_lbf_config():
    """``small_lbf_config(overrides)``: the tiny LBF run (``small_lbf``) with dotted overrides,
    validated (T_U = 3, T_V = 6 for BDPS: several decisions per episode)."""

    def make(overrides: dict[str, Any] | None = None) -> ExperimentConfig:
        overrides = overrides or {}
        entries = []
        if overrides.get("algorithm.name") == "bdps":  # another algorithm's section is refused
            entries.append(("bdps", {"role_interval": 3, "group_interval_multiple": 2}, "test"))
        entries += [(key, value, "test") for key, value in overrides.items()]
        return build_config(merge_overrides(_SMALL_LBF, entries))

    return make
