"""Registry of environment adapters: ``make_env("lbf", task="8x8-2p-2f-coop")``.

An adapter is a factory returning a :class:`pettingzoo.ParallelEnv` that follows the conventions
documented in :mod:`bdps_agents.adapters.base` (agent order, ``infos[agent]["action_mask"]``,
unavailable actions replaced and reported in ``infos[agent]["action_replaced"]``, float32
``state()``/``state_space``, ``noop_action``, optional ``episode_limit``, ``metric_keys``,
``metric_names`` and ``frame_drawer``). Each built-in adapter is a package
``bdps_agents.adapters.<name>`` holding its env, its frame drawer (``render``) and, for SMAX, its
batched vector env (``vector``).

Sources of adapters, all resolved lazily so that importing this module imports no simulator:

* built-ins, registered below as ``"module:attr"`` strings;
* :func:`register_adapter` at run time (a callable or a ``"module:attr"`` string);
* third-party packages, through the entry-point group ``bdps_agents.adapters``
  (``name = "package.module:factory"``), read on the first lookup. Names registered explicitly
  win over entry points of the same name.

:func:`check_adapter_kwargs` checks keyword arguments without building the env (a config's
``env.kwargs`` when it is validated): against the factory's signature, then with the factory's
own ``check_kwargs(**kwargs)`` if it defines one (as the LBF adapter does).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from pettingzoo import ParallelEnv

from bdps_agents.adapters.base import MultiAgentEnvAdapter
from bdps_agents.config import ConfigError

__all__ = [
    "ENTRY_POINT_GROUP",
    "adapter_factory",
    "check_parallel_env",
    "AdapterArgumentError",
    "AdapterLoadError",
    "AdapterRegistry",
    "MultiAgentEnvAdapter",
    "UnknownAdapterError",
    "available_adapters",
    "check_adapter_kwargs",
    "make_env",
    "register_adapter",
]

ENTRY_POINT_GROUP = "bdps_agents.adapters"

Factory = Callable[..., ParallelEnv]

BUILTIN_ADAPTERS: dict[str, str] = {
    "grf": "bdps_agents.adapters.grf.env:GRFParallelEnv",
    "lbf": "bdps_agents.adapters.lbf.env:LBFParallelEnv",
    "smac": "bdps_agents.adapters.smac.env:make_smac_env",
    "smax": "bdps_agents.adapters.smax.env:make_smax_env",
}


class UnknownAdapterError(KeyError, ValueError):
    """No adapter is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AdapterLoadError(ImportError):
    """An adapter's module, attribute or entry point could not be loaded."""


class AdapterArgumentError(ConfigError, TypeError):
    """Keyword arguments an adapter does not accept: unknown, missing or refused by its own
    ``check_kwargs``. A :class:`~bdps_agents.config.ConfigError` (``bdps`` prints one line) and
    a ``TypeError``, like calling the factory with a wrong keyword."""


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
        if self._discovered or self._group is None:  # no group: nothing to discover
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

    def check_kwargs(self, name: str, kwargs: Mapping[str, Any]) -> None:
        """See :func:`check_adapter_kwargs`."""
        factory = self.factory(name)
        try:
            params = list(inspect.signature(factory).parameters.values())
        except (TypeError, ValueError):  # no signature (e.g. some builtins): nothing to check
            params = []
        named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if params and not any(p.kind is p.VAR_KEYWORD for p in params):
            unknown = [key for key in kwargs if key not in {p.name for p in named}]
            if unknown:
                raise AdapterArgumentError(
                    f"adapter {name!r} has no keyword argument {', '.join(map(repr, unknown))}; "
                    f"it accepts {', '.join(p.name for p in named) or 'none'}"
                )
        missing = [p.name for p in named if p.default is p.empty and p.name not in kwargs]
        if missing:
            raise AdapterArgumentError(
                f"adapter {name!r} needs the keyword argument(s) {', '.join(missing)}"
            )
        # only a class's own check: a subclass may take other arguments than its base checks
        own = not isinstance(factory, type) or "check_kwargs" in vars(factory)
        check = getattr(factory, "check_kwargs", None) if own else None
        if callable(check):
            try:
                check(**kwargs)
            except (TypeError, ValueError) as err:
                raise AdapterArgumentError(f"adapter {name!r}: {err}") from None

    def make(self, name: str, **kwargs: Any) -> ParallelEnv:
        self.check_kwargs(name, kwargs)
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


def check_adapter_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Refuse ``kwargs`` that the adapter ``name`` would refuse, without building it.

    Checks the keywords against the factory's signature (unknown ones, unless it takes
    ``**kwargs``; required ones missing), then calls the factory's ``check_kwargs(**kwargs)``
    if it has one (:meth:`LBFParallelEnv.check_kwargs
    <bdps_agents.adapters.lbf.env.LBFParallelEnv.check_kwargs>` checks every value). Raises
    :class:`AdapterArgumentError` naming the adapter and the keyword (and listing the accepted
    ones), :class:`UnknownAdapterError` or :class:`AdapterLoadError`. :func:`make_env` runs it;
    so does :class:`~bdps_agents.config.EnvConfig` when a config is validated.
    """
    _registry.check_kwargs(name, kwargs)


def adapter_factory(name: str) -> Factory:
    """The factory registered as ``name`` (imported now). Vector envs resolve it in the parent
    process and hand it to their workers, so adapters registered at run time also work in
    spawned worker processes."""
    return _registry.factory(name)


def available_adapters() -> list[str]:
    """Sorted names of all adapters (built-in, registered and discovered entry points)."""
    return _registry.names()
