"""Tianshou's :class:`~tianshou.env.BaseVectorEnv` bookkeeping for a vector env that steps all
its envs itself, without workers (:class:`~bdps_agents.adapters.smax.vector.SMAXVectorEnv`):
per-env attributes are those of one equivalent ``JointEnv`` (the *probe*, never reset here),
with per-env copies of its spaces."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
from tianshou.env import BaseVectorEnv

if TYPE_CHECKING:
    from bdps_agents.joint_env import JointEnv

__all__ = ["WorkerlessVectorEnv"]


class WorkerlessVectorEnv(BaseVectorEnv):
    """``BaseVectorEnv`` without workers; subclasses call :meth:`_init_workerless` instead of
    ``BaseVectorEnv.__init__`` and implement ``seed``, ``reset``, ``step`` and ``close``."""

    _probe: JointEnv

    def _init_workerless(self, probe: JointEnv, num_envs: int) -> None:
        # the equivalent single env: its sizes, spaces and semantics are the reference
        self._probe = probe
        # what BaseVectorEnv.__init__ sets, without workers (the Collector reads env_num,
        # is_async and, through __getattribute__, action_space via get_env_attr)
        self._env_fns: list = []
        self.workers: list = []
        self.env_num = int(num_envs)
        self.wait_num = self.env_num
        self.timeout = None
        self.is_async = False
        self.waiting_conn: list = []
        self.waiting_id: list[int] = []
        self.ready_id = list(range(self.env_num))
        self.is_closed = False
        self._env_attrs: list[dict[str, Any]] = [
            {
                "observation_space": copy.deepcopy(self._probe.observation_space),
                "action_space": copy.deepcopy(self._probe.action_space),
            }
            for _ in range(self.env_num)
        ]

    # -- attributes -------------------------------------------------------------------------------

    @property
    def probe(self) -> JointEnv:
        """A ``JointEnv`` over the same map and settings (for ``EnvSpec.of``; not reset here)."""
        return self._probe

    @property
    def single_observation_space(self) -> Any:
        return self._probe.observation_space

    @property
    def single_action_space(self) -> Any:
        return self._probe.action_space

    def get_env_attr(self, key: str, id: int | list[int] | np.ndarray | None = None) -> list[Any]:
        """Per-env attribute values (the spaces are per-env copies; other keys are read from an
        equivalent ``JointEnv``, or what :meth:`set_env_attr` set)."""
        self._assert_is_not_closed()
        values = []
        for j in self._wrap_id(id):
            attrs = self._env_attrs[int(j)]
            values.append(attrs[key] if key in attrs else getattr(self._probe, key))
        return values

    def set_env_attr(
        self, key: str, value: Any, id: int | list[int] | np.ndarray | None = None
    ) -> None:
        """Record a per-env attribute value (read back by :meth:`get_env_attr`; it does not
        change the simulation)."""
        self._assert_is_not_closed()
        for j in self._wrap_id(id):
            self._env_attrs[int(j)][key] = value

    def _ids(self, env_id: int | list[int] | np.ndarray | None) -> np.ndarray:
        ids = np.asarray(self._wrap_id(env_id))
        if ids.ndim != 1 or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"env ids must be integers, got {env_id!r}")
        ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.env_num):
            raise ValueError(f"env ids must be in [0, {self.env_num}), got {ids.tolist()}")
        if np.unique(ids).size != ids.size:
            raise ValueError(f"env ids must be distinct, got {ids.tolist()}")
        return ids
