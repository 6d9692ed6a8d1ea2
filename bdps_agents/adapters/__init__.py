"""Registry of environment adapters: ``make_env("lbf", task="8x8-2p-2f-coop")``.

An adapter is a factory returning a :class:`pettingzoo.ParallelEnv` that follows the conventions
documented in :mod:`bdps_agents.adapters.base` (agent order, ``infos[agent]["action_mask"]``,
unavailable actions replaced and reported in ``infos[agent]["action_replaced"]``, float32
``state()``/``state_space``, ``noop_action``, optional ``episode_limit`` and ``metric_keys``).

Sources of adapters, all resolved lazily so that importing this module imports no simulator:

* built-ins, registered below as ``"module:attr"`` strings;
* :func:`register_adapter` at run time (a callable or a ``"module:attr"`` string);
* third-party packages, through the entry-point group ``bdps_agents.adapters``
  (``name = "package.module:factory"``), read on the first lookup. Names registered explicitly
  win over entry points of the same name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from collections.abc import Callable
from typing import Any

from pettingzoo import ParallelEnv

from bdps_agents.adapters.base import MultiAgentEnvAdapter

__all__ = [
    "ENTRY_POINT_GROUP",
    "adapter_factory",
    "check_parallel_env",
    "AdapterLoadError",
    "AdapterRegistry",
    "MultiAgentEnvAdapter",
    "UnknownAdapterError",
    "available_adapters",
    "make_env",
    "register_adapter",
]

ENTRY_POINT_GROUP = "bdps_agents.adapters"

Factory = Callable[..., ParallelEnv]

BUILTIN_ADAPTERS: dict[str, str] = {
    "grf": "bdps_agents.adapters.grf:GRFParallelEnv",
    "lbf": "bdps_agents.adapters.lbf:LBFParallelEnv",
    "smac": "bdps_agents.adapters.smac:make_smac_env",
    "smax": "bdps_agents.adapters.smax:make_smax_env",
}


class UnknownAdapterError(KeyError, ValueError):
    """No adapter is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AdapterLoadError(ImportError):
    """An adapter's module, attribute or entry point could not be loaded."""


def _load_target(target: str) -> Factory:
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise AdapterLoadError(f"adapter target {target!r} is not of the form 'module:attr'")
    obj: Any = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj


class AdapterRegistry:
    """Name -> factory map with lazy targets and entry-point discovery (one per process)."""

    def __init__(
        self,
        builtins: dict[str, str | Factory] | None = None,
        *,
        entry_point_group: str | None = ENTRY_POINT_GROUP,
    ) -> None:
        self._factories: dict[str, str | Factory] = dict(builtins or {})
        self._entry_points: dict[str, importlib.metadata.EntryPoint] = {}
        self._group = entry_point_group
        self._discovered = entry_point_group is None

    def register(self, name: str, factory: str | Factory, *, overwrite: bool = False) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"adapter name must be a non-empty string, got {name!r}")
        if not (callable(factory) or isinstance(factory, str)):
            raise TypeError(f"adapter factory for {name!r} must be callable or 'module:attr'")
        if name in self._factories and not overwrite:
            raise ValueError(
                f"an adapter named {name!r} is already registered; pass overwrite=True to replace"
            )
        self._factories[name] = factory

    def unregister(self, name: str) -> None:
        self._factories.pop(name, None)
        self._entry_points.pop(name, None)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        # Looked up through the module attribute so that tests can substitute it.
        for ep in importlib.metadata.entry_points(group=self._group):
            if ep.name in self._factories or ep.name in self._entry_points:
                warnings.warn(
                    f"entry point {ep.name!r} = {ep.value!r} in group {self._group!r} is ignored: "
                    "an adapter of that name is already registered",
                    stacklevel=3,
                )
                continue
            self._entry_points[ep.name] = ep

    def names(self) -> list[str]:
        self._discover()
        return sorted({*self._factories, *self._entry_points})

    def factory(self, name: str) -> Factory:
        self._discover()
        if name in self._factories:
            target = self._factories[name]
            if isinstance(target, str):
                try:
                    target = _load_target(target)
                except (ImportError, AttributeError) as exc:
                    raise AdapterLoadError(
                        f"adapter {name!r} could not be loaded from {target!r}: {exc}"
                    ) from exc
                self._factories[name] = target
            return target
        if name in self._entry_points:
            ep = self._entry_points[name]
            try:
                factory = ep.load()
            except Exception as exc:  # any import-time failure of third-party code
                raise AdapterLoadError(
                    f"entry point {ep.name!r} = {ep.value!r} (group {self._group!r}) "
                    f"failed to load: {type(exc).__name__}: {exc}"
                ) from exc
            if not callable(factory):
                raise AdapterLoadError(f"entry point {ep.name!r} = {ep.value!r} is not callable")
            self._factories[name] = factory
            del self._entry_points[name]
            return factory
        raise UnknownAdapterError(
            f"unknown environment adapter {name!r}; known adapters: {', '.join(self.names())}"
        )

    def make(self, name: str, **kwargs: Any) -> ParallelEnv:
        return check_parallel_env(self.factory(name)(**kwargs), name)


def check_parallel_env(env: Any, name: str) -> ParallelEnv:
    """``env`` if it looks like a PettingZoo ParallelEnv, else ``TypeError`` naming the adapter.

    Duck-typed on purpose: PettingZoo wrappers and third-party envs need not subclass.
    """
    for attr in ("possible_agents", "reset", "step", "action_space", "observation_space"):
        if not hasattr(env, attr):
            raise TypeError(
                f"adapter {name!r} returned {type(env).__name__}, which lacks {attr!r}: "
                "not a PettingZoo ParallelEnv"
            )
    return env


_registry = AdapterRegistry(dict(BUILTIN_ADAPTERS))


def register_adapter(name: str, factory: str | Factory, *, overwrite: bool = False) -> None:
    """Register ``factory`` (a callable or a lazy ``"module:attr"`` string) under ``name``.

    Raises ``ValueError`` if the name is taken, unless ``overwrite=True``.
    """
    _registry.register(name, factory, overwrite=overwrite)


def make_env(name: str, **kwargs: Any) -> ParallelEnv:
    """Build the adapter registered as ``name`` with ``kwargs``.

    Raises :class:`UnknownAdapterError` (a ``KeyError`` and ``ValueError``) listing the known
    names, or :class:`AdapterLoadError` if the adapter's code cannot be imported.
    """
    return _registry.make(name, **kwargs)


def adapter_factory(name: str) -> Factory:
    """The factory registered as ``name`` (imported now). Vector envs resolve it in the parent
    process and hand it to their workers, so adapters registered at run time also work in
    spawned worker processes."""
    return _registry.factory(name)


def available_adapters() -> list[str]:
    """Sorted names of all adapters (built-in, registered and discovered entry points)."""
    return _registry.names()
