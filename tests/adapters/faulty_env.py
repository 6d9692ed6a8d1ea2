"""A deliberately failing adapter for the worker-fault tests (not a real environment)."""

from __future__ import annotations

from typing import Any

from bdps_agents.adapters.lbf import LBFParallelEnv


class CrashingLBF(LBFParallelEnv):
    """LBF whose ``step`` raises on the ``fail_at``-th call of the env's life: a simulator that
    crashes inside a vector-env worker."""

    def __init__(self, fail_at: int = 30, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fail_at, self._calls = fail_at, 0

    def step(self, actions):
        self._calls += 1
        if self._calls >= self._fail_at:
            raise RuntimeError(f"simulated simulator crash at step {self._calls}")
        return super().step(actions)
