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

import importlib.util
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium
from pettingzoo import ParallelEnv

from bdps_agents.adapters.base import MultiAgentEnvAdapter
from bdps_agents.config import ConfigError
from bdps_agents.registry import Registry, RegistryLoadError, UnknownNameError

__all__ = [
    "ENTRY_POINT_GROUP",
    "AdapterArgumentError",
    "AdapterLoadError",
    "AdapterRegistry",
    "MultiAgentEnvAdapter",
    "UnknownAdapterError",
    "adapter_factory",
    "adapter_scenario_dir",
    "available_adapters",
    "check_adapter_kwargs",
    "check_parallel_env",
    "make_env",
    "not_a_parallel_env",
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


class UnknownAdapterError(UnknownNameError):
    """No adapter is registered under the requested name."""


class AdapterLoadError(RegistryLoadError):
    """An adapter's module, attribute or entry point could not be loaded."""


class AdapterArgumentError(ConfigError, TypeError):
    """Keyword arguments an adapter does not accept: unknown, missing or refused by its own
    ``check_kwargs``. A :class:`~bdps_agents.config.ConfigError` (``bdps`` prints one line) and
    a ``TypeError``, like calling the factory with a wrong keyword."""


def _callable_factory(name: str, obj: Any) -> Factory:
    if not callable(obj):
        raise TypeError(f"{type(obj).__name__} is not callable")
    return obj


class AdapterRegistry(Registry[Factory]):
    """Name -> env factory (one per process): the lazy registry of
    :mod:`bdps_agents.registry`, plus checking an adapter's keyword arguments."""

    def __init__(
        self,
        builtins: dict[str, str | Factory] | None = None,
        *,
        entry_point_group: str | None = ENTRY_POINT_GROUP,
    ) -> None:
        super().__init__(
            "environment adapter",
            builtins,
            entry_point_group=entry_point_group,
            check=_callable_factory,
            load_error=AdapterLoadError,
            unknown_error=UnknownAdapterError,
        )

    def register(self, name: str, factory: str | Factory, *, overwrite: bool = False) -> None:
        if not (callable(factory) or isinstance(factory, str)):
            raise TypeError(f"adapter factory for {name!r} must be callable or 'module:attr'")
        super().register(name, factory, overwrite=overwrite)

    def factory(self, name: str) -> Factory:
        return self.get(name)

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


def not_a_parallel_env(env: Any) -> str | None:
    """Why ``env`` is not a PettingZoo ParallelEnv, with the fix, or None if it looks like one.

    Duck-typed on purpose: PettingZoo wrappers and third-party envs need not subclass. An AEC
    env (``simple_spread_v3.env()``) and a single-agent Gymnasium env are named as such: both
    would otherwise fail only later, inside ``reset`` or ``step``."""
    kind = type(env).__name__
    if hasattr(env, "agent_iter") and hasattr(env, "last"):  # AECEnv and its wrappers
        return (
            f"{kind} is a PettingZoo AEC env (agents act in turn): build the parallel version "
            "(e.g. simple_spread_v3.parallel_env() instead of .env()) or convert it with "
            "pettingzoo.utils.conversions.aec_to_parallel(env)"
        )
    if isinstance(env, gymnasium.Env) and not hasattr(env, "possible_agents"):
        return (
            f"{kind} is a single-agent Gymnasium env: a PettingZoo ParallelEnv (possible_agents, "
            "per-agent dicts) is needed"
        )
    for attr in ("possible_agents", "reset", "step", "action_space", "observation_space"):
        if not hasattr(env, attr):
            return f"{kind} lacks {attr!r}: not a PettingZoo ParallelEnv"
    return None


def check_parallel_env(env: Any, name: str) -> ParallelEnv:
    """``env`` if it looks like a PettingZoo ParallelEnv, else ``TypeError`` naming the adapter
    (:func:`not_a_parallel_env`)."""
    problem = not_a_parallel_env(env)
    if problem is not None:
        raise TypeError(f"adapter {name!r}: {problem}")
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


def adapter_scenario_dir(name: str) -> Any | None:
    """The ``scenarios`` folder of a registered adapter (a Traversable), or None if it has none:
    the folder beside the module of its factory (for a third-party ``"my_pkg.env:make_env"``,
    ``my_pkg/scenarios``; ship it as package data). Imports the module's parent packages, not
    the module itself (a lazily registered factory's module is not imported)."""
    from importlib import resources

    if name not in _registry.names():
        return None
    target = _registry.target(name)
    module = target.partition(":")[0] if target else getattr(_registry.get(name), "__module__", "")
    try:
        spec = importlib.util.find_spec(module) if module else None
    except (ImportError, ValueError):  # reported when the adapter itself is built
        return None
    if spec is None:
        return None
    package = module if spec.submodule_search_locations is not None else spec.parent
    folder = resources.files(package).joinpath("scenarios") if package else None
    return folder if folder is not None and folder.is_dir() else None


def available_adapters() -> list[str]:
    """Sorted names of all adapters (built-in, registered and discovered entry points)."""
    return _registry.names()
