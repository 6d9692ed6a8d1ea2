"""The algorithm registry: built-ins listed without loading them, run-time registration and
third-party entry points reach the config, `--algo` and the builder; broken ones are named."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from typing import Any

import pytest

from bdps_agents import algorithms
from bdps_agents.algorithms import (
    BUILTIN_ALGORITHMS,
    ENTRY_POINT_GROUP,
    AlgorithmLoadError,
    AlgorithmSpec,
    algorithm_spec,
    algorithm_variants,
    available_algorithms,
    register_algorithm,
)
from bdps_agents.algorithms.vdn import SPEC as VDN_SPEC
from bdps_agents.algorithms.vdn import VDNOptions
from bdps_agents.config import ConfigError, build_config
from bdps_agents.registry import Registry


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    registry = Registry(
        "algorithm",
        dict(BUILTIN_ALGORITHMS),
        entry_point_group=ENTRY_POINT_GROUP,
        check=algorithms._check_spec,
        load_error=AlgorithmLoadError,
        unknown_error=algorithms.UnknownAlgorithmError,
    )
    monkeypatch.setattr(algorithms, "_REGISTRY", registry)
    return registry


def _entry_points(monkeypatch: pytest.MonkeyPatch, name: str, target: str) -> None:
    ep = importlib.metadata.EntryPoint(name, target, ENTRY_POINT_GROUP)

    def entry_points(**params: Any) -> importlib.metadata.EntryPoints:
        assert params == {"group": ENTRY_POINT_GROUP}
        return importlib.metadata.EntryPoints((ep,))

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


# a third-party algorithm: VDN's learner under another name, with a setting of its own
class SumOptions(VDNOptions):
    scale: float = 1.0


SUM_SPEC = AlgorithmSpec(name="sum", summary="VDN again", options=SumOptions, build=VDN_SPEC.build)


def test_listing_loads_no_algorithm_and_no_torch() -> None:
    code = (
        "import sys, bdps_agents.algorithms as a; "
        "assert set(a.available_algorithms()) >= {'qmix', 'vdn', 'bdps'}; "
        "assert 'torch' not in sys.modules, 'torch'; "
        "assert not [m for m in sys.modules if m.startswith('bdps_agents.algorithms.')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_registered_algorithm_reaches_the_config_and_the_builder(fresh_registry) -> None:
    with pytest.raises(ConfigError, match="unknown algorithm 'sum'"):
        build_config({"algorithm": {"name": "sum"}})
    register_algorithm(SUM_SPEC)
    cfg = build_config({"algorithm": {"name": "sum"}, "sum": {"scale": 2.0}})
    assert cfg.options == SumOptions(scale=2.0) and cfg.network.sharing == "full"
    assert "sum" in algorithm_variants() and "sum-none" in algorithm_variants()
    with pytest.raises(ValueError, match="already registered"):
        register_algorithm(SUM_SPEC)
    with pytest.raises(ConfigError, match=r"sum.scale: Input should be a valid number"):
        build_config({"algorithm": {"name": "sum"}, "sum": {"scale": "big"}})


def test_an_entry_point_is_discovered_and_a_broken_one_is_named(fresh_registry, monkeypatch):
    _entry_points(monkeypatch, "sum", f"{__name__}:SUM_SPEC")
    assert "sum" in available_algorithms()
    assert algorithm_spec("sum") is SUM_SPEC


def test_an_entry_point_that_is_no_spec_or_misnamed_is_refused(fresh_registry, monkeypatch):
    _entry_points(monkeypatch, "other", f"{__name__}:SUM_SPEC")  # its spec says "sum"
    with pytest.raises(AlgorithmLoadError, match="its spec is named 'sum'"):
        algorithm_spec("other")


def test_a_broken_entry_point_is_named(fresh_registry, monkeypatch):
    _entry_points(monkeypatch, "ghost", "bdps_no_such_pkg.algo:SPEC")
    assert "ghost" in available_algorithms()  # listing does not import it
    with pytest.raises(AlgorithmLoadError, match=r"ghost.*bdps_no_such_pkg"):
        algorithm_spec("ghost")


def test_a_spec_must_name_sharing_modes_that_exist() -> None:
    with pytest.raises(ValueError, match="sharing must list some of"):
        AlgorithmSpec(name="x", summary="x", options=VDNOptions, build="m:f", sharing=("all",))
