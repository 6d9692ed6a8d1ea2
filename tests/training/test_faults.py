"""Faults: an env that raises inside a worker process gives a clear error, not a hang."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

import bdps_agents.adapters as adapters
from bdps_agents.adapters import BUILTIN_ADAPTERS, AdapterRegistry, register_adapter
from bdps_agents.training import EnvWorkerError, train
from tests.adapters.faulty_env import CrashingLBF


@pytest.fixture
def crashing_adapter(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(adapters, "_registry", AdapterRegistry(dict(BUILTIN_ADAPTERS)))
    register_adapter("crashing-lbf", CrashingLBF)
    return "crashing-lbf"


@pytest.mark.parametrize("vector_env", ["subproc", "dummy"])
def test_env_raising_in_a_worker_stops_training_with_a_clear_error(
    small_lbf, config_with, crashing_adapter: str, tmp_path: Path, vector_env: str
) -> None:
    cfg = config_with(
        small_lbf,
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


@pytest.mark.parametrize(
    ("algo", "poisoned", "component"),
    [
        ("qmix", "td_loss", "TD loss"),
        ("bdps", "role_loss", "VAE loss"),
        ("bdps", "group_loss", "group selector loss"),
    ],
)
def test_non_finite_loss_stops_training_naming_step_and_component(
    small_lbf,
    config_with,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    algo: str,
    poisoned: str,
    component: str,
) -> None:
    import torch

    from bdps_agents.algorithms.bdps.learner import BDPS
    from bdps_agents.algorithms.qmix.algorithm import QMIX
    from bdps_agents.algorithms.value_decomposition import NonFiniteError
    from bdps_agents.training import load_checkpoint

    owner = QMIX if poisoned == "td_loss" else BDPS
    original = getattr(owner, poisoned)
    calls = {"n": 0}

    def poison(self, *args, **kwargs):
        loss, stats = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= 40:  # after the first checkpoint (every 200 env steps, 10 per update)
            loss = loss * torch.tensor(float("nan"))
        return loss, stats

    monkeypatch.setattr(owner, poisoned, poison)
    cfg = config_with(
        small_lbf,
        algorithm={"name": algo},
        # BDPS's section only when it is chosen (another algorithm's section is refused)
        **({"bdps": {"role_interval": 3, "group_interval_multiple": 2}} if algo == "bdps" else {}),
        training={"total_steps": 2000, "test_interval": 200, "steps_per_update": 10},
    )
    with pytest.raises(NonFiniteError, match=rf"env step \d+: non-finite {component}.*kept"):
        train(cfg, tmp_path)
    _, data = load_checkpoint(tmp_path / "checkpoint.pt")  # the last good one
    params = data["algorithm"]
    assert all(torch.isfinite(v).all() for v in params.values() if isinstance(v, torch.Tensor))
