"""Registry of mixers: ``algorithm.mixer`` in a config (``--set algorithm.mixer=qplex``).

A mixer is registered as a builder, ``(cfg: ExperimentConfig, spec) -> nn.Module`` (``spec``: an
env spec with ``n_agents``, ``state_dim``, ``n_actions``), whose module maps the agents' chosen
Q-values ``(..., n)`` and the state ``(..., S)`` to Q_tot ``(...)`` (the forward contract of
:mod:`bdps_agents.networks.mixer`). Built-ins: ``qmix``, ``vdn`` and ``qplex``; others through
:func:`register_mixer` or the entry-point group ``bdps_agents.mixers`` (``name =
"package.module:builder"``). Listing names imports no torch
(:class:`~bdps_agents.registry.Registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bdps_agents.config import ConfigError
from bdps_agents.registry import Registry, RegistryLoadError, UnknownNameError

if TYPE_CHECKING:
    from torch import nn

    from bdps_agents.config import ExperimentConfig

ENTRY_POINT_GROUP = "bdps_agents.mixers"

# one line per built-in mixer: name -> its builder
BUILTIN_MIXERS: dict[str, str] = {
    "qmix": "bdps_agents.algorithms.building:qmix_mixer",
    "qplex": "bdps_agents.algorithms.building:qplex_mixer",
    "vdn": "bdps_agents.algorithms.building:vdn_mixer",
}


class UnknownMixerError(UnknownNameError, ConfigError):
    """No mixer of that name is registered."""


class MixerLoadError(RegistryLoadError):
    """A mixer's builder or entry point could not be loaded."""


def _check_builder(name: str, obj: Any) -> Callable[..., Any]:
    if not callable(obj):
        raise TypeError(f"expected a builder function, got {type(obj).__name__}")
    return obj


_REGISTRY: Registry[Callable[..., Any]] = Registry(
    "mixer",
    dict(BUILTIN_MIXERS),
    entry_point_group=ENTRY_POINT_GROUP,
    check=_check_builder,
    load_error=MixerLoadError,
    unknown_error=UnknownMixerError,
)


def available_mixers() -> list[str]:
    """Registered mixer names (built-in, registered, entry points), without loading any."""
    return _REGISTRY.names()


def mixer_builder(name: str) -> Callable[..., Any]:
    """The builder of ``name``; :class:`UnknownMixerError` lists the known names."""
    return _REGISTRY.get(name)


def register_mixer(
    builder: Callable[..., Any] | str, *, name: str, overwrite: bool = False
) -> None:
    """Add a mixer at run time: a builder ``(cfg, spec) -> nn.Module``, or ``"module:attr"``."""
    _REGISTRY.register(name, builder, overwrite=overwrite)


def unregister_mixer(name: str) -> None:
    _REGISTRY.unregister(name)


def build_mixer(cfg: ExperimentConfig, spec: Any, default: str = "qmix") -> nn.Module:
    """The mixer ``algorithm.mixer`` names, or ``default`` (the algorithm's own) when unset."""
    return mixer_builder(cfg.algorithm.mixer or default)(cfg, spec)
