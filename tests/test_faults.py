"""Faults: an env that raises inside a worker process gives a clear error, not a hang."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from conftest import SMALL_LBF, config_with
from faulty_env import CrashingLBF

import bdps_agents.adapters as adapters
from bdps_agents.adapters import BUILTIN_ADAPTERS, AdapterRegistry, register_adapter
from bdps_agents.training import EnvWorkerError, train


@pytest.fixture
def crashing_adapter(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(adapters, "_registry", AdapterRegistry(dict(BUILTIN_ADAPTERS)))
    register_adapter("crashing-lbf", CrashingLBF)
    return "crashing-lbf"


@pytest.mark.parametrize("vector_env", ["subproc", "dummy"])
def test_env_raising_in_a_worker_stops_training_with_a_clear_error(
    crashing_adapter: str, tmp_path: Path, vector_env: str
) -> None:
    cfg = config_with(
        SMALL_LBF,
        env={
            "adapter": crashing_adapter,
            "kwargs": {"task": "6x6-2p-1f", "fail_at": 150},
            "vector_env": vector_env,
        },
        training={"total_steps": 3000, "test_interval": 200},
    )
    if vector_env == "subproc":
        with pytest.raises(EnvWorkerError, match=r"environment worker \(subproc\) died.*dummy"):
            train(cfg, tmp_path)
    else:  # in-process envs: the env's own exception, unchanged
        with pytest.raises(RuntimeError, match="simulated simulator crash"):
            train(cfg, tmp_path)
    assert not multiprocessing.active_children()  # no worker left behind
