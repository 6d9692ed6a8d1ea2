"""Registry of algorithms: ``bdps train --algo NAME`` and ``algorithm.name`` in a config.

An algorithm is one folder, ``bdps_agents/algorithms/<name>/``, whose ``__init__`` defines an
:class:`AlgorithmSpec` (``SPEC``) and imports no torch: its options (the config section named
after it, an :class:`AlgorithmOptions` subclass), the network sharing modes it accepts, and
``"module:function"`` strings for what needs torch (the builder, optional figures). Its policy,
learner (a :class:`~bdps_agents.algorithms.value_decomposition.ValueDecomposition` subclass that
adds losses through hooks), diagnostics, plots and per-scenario presets live beside it.

Sources, all resolved lazily (:class:`bdps_agents.registry.Registry`): the built-ins below, one
line each; :func:`register_algorithm` at run time; and third-party packages through the
entry-point group ``bdps_agents.algorithms`` (``name = "package.module:SPEC"``).
CONTRIBUTING.md has the checklist for adding one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from bdps_agents.config import ConfigError, StrictModel
from bdps_agents.registry import Registry, RegistryLoadError, UnknownNameError, load_target

if TYPE_CHECKING:
    from bdps_agents.config import ExperimentConfig

ENTRY_POINT_GROUP = "bdps_agents.algorithms"

# one line per built-in algorithm: name -> its spec
BUILTIN_ALGORITHMS: dict[str, str] = {
    "bdps": "bdps_agents.algorithms.bdps:SPEC",
    "cds": "bdps_agents.algorithms.cds:SPEC",
    "eoi": "bdps_agents.algorithms.eoi:SPEC",
    "qmix": "bdps_agents.algorithms.qmix:SPEC",
    "rode": "bdps_agents.algorithms.rode:SPEC",
    "seps": "bdps_agents.algorithms.seps:SPEC",
    "vdn": "bdps_agents.algorithms.vdn:SPEC",
}

# what network.sharing says: one network for all agents, one per agent, one per (dynamic) role
SHARING_MODES = ("full", "none", "roles")


class AlgorithmOptions(StrictModel):
    """An algorithm's own config section (``<name>: {...}``); empty for plain QMIX."""

    def check_env(
        self, n_agents: int, episode_limit: int | None, n_actions: int | None = None
    ) -> None:
        """Constraints that need the environment's sizes (``n_actions``: None where unknown);
        raise ``ValueError`` naming the key."""

    def label_suffix(self) -> str | None:
        """A variant's tag in run names (``bdps-individual``), None for the default."""
        return None


class UnknownAlgorithmError(UnknownNameError, ConfigError):
    """No algorithm of that name is registered."""


class AlgorithmLoadError(RegistryLoadError):
    """An algorithm's spec, builder or entry point could not be loaded."""


@dataclass(frozen=True)
class AlgorithmSpec:
    """What the registry knows of an algorithm.

    :param name: ``--algo`` / ``algorithm.name``; also the name of its config section.
    :param summary: one line for ``bdps train --help`` and the docs.
    :param options: its config section's model.
    :param build: ``"module:function"`` (or the function): ``(ExperimentConfig, EnvSpec) ->``
        a Tianshou algorithm (a ``ValueDecomposition``) holding its policy.
    :param sharing: the ``network.sharing`` modes it accepts, its default first.
    :param plots: optional ``"module:function"``: ``(Results) -> [(file name, Figure or
        None)]``, the figures ``bdps plot`` draws of its diagnostics.
    :param summary_metrics: its update diagnostics that ``bdps plot``'s summary table shows
        (mean over the last 10% of training).
    :param variants: its named variants besides the sharing modes, as dotted overrides (BDPS:
        ``individual`` = ``{"bdps.levels": 1}``); the algorithm-contract tests run each.
    :param presets: optional package whose ``<family>/<scenario>.yaml`` files hold this
        section's settings per scenario preset (the paper's per-map values).
    :param default_mixer: the registered mixer it uses when ``algorithm.mixer`` is unset; run
        names add ``algorithm.mixer`` when it is another one (``qmix-qplex``).
    """

    name: str
    summary: str
    options: type[AlgorithmOptions]
    build: str | Callable[..., Any]
    sharing: tuple[str, ...] = ("full", "none")
    plots: str | Callable[..., Any] | None = None
    summary_metrics: tuple[str, ...] = ()
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    presets: str | None = None
    default_mixer: str = "qmix"

    def __post_init__(self) -> None:
        unknown = [mode for mode in self.sharing if mode not in SHARING_MODES]
        if not self.sharing or unknown:
            raise ValueError(
                f"algorithm {self.name!r}: sharing must list some of {SHARING_MODES}, got "
                f"{self.sharing}"
            )

    def builder(self) -> Callable[..., Any]:
        return self._resolve(self.build, "build")

    def plotter(self) -> Callable[..., Any] | None:
        return None if self.plots is None else self._resolve(self.plots, "plots")

    def _resolve(self, target: str | Callable[..., Any], what: str) -> Callable[..., Any]:
        if not isinstance(target, str):
            return target
        try:
            return load_target(target)
        except (ImportError, AttributeError) as exc:
            raise AlgorithmLoadError(
                f"algorithm {self.name!r}: its {what} {target!r} could not be loaded: {exc}"
            ) from exc

    def preset(self, scenario: str) -> dict[str, Any] | None:
        """This section's settings for a scenario preset (``smax/5m_vs_6m``), if it has some."""
        if self.presets is None or "/" not in scenario:
            return None
        family, _, name = scenario.partition("/")
        res = resources.files(self.presets).joinpath(family, f"{name}.yaml")
        if not res.is_file():
            return None
        from bdps_agents.presets import read_yaml

        return read_yaml(res.read_bytes(), f"{self.name} preset {scenario}")

    def label(self, cfg: ExperimentConfig) -> str:
        """The run's name for logdirs and figures: ``qmix``, ``qmix-none``, ``bdps-individual``,
        ``qmix-qplex`` (``algorithm.mixer``, when not the algorithm's default)."""
        parts = [self.name]
        if cfg.network.sharing != self.sharing[0]:
            parts.append(str(cfg.network.sharing))
        suffix = cfg.options.label_suffix()
        if suffix:
            parts.append(suffix)
        if cfg.algorithm.mixer not in (None, self.default_mixer):
            parts.append(str(cfg.algorithm.mixer))
        return "-".join(parts)


def _check_spec(name: str, obj: Any) -> AlgorithmSpec:
    if not isinstance(obj, AlgorithmSpec):
        raise TypeError(f"expected an AlgorithmSpec, got {type(obj).__name__}")
    if obj.name != name:
        raise TypeError(f"its spec is named {obj.name!r}")
    return obj


_REGISTRY: Registry[AlgorithmSpec] = Registry(
    "algorithm",
    dict(BUILTIN_ALGORITHMS),
    entry_point_group=ENTRY_POINT_GROUP,
    check=_check_spec,
    load_error=AlgorithmLoadError,
    unknown_error=UnknownAlgorithmError,
)


def available_algorithms() -> list[str]:
    """Registered algorithm names (built-in, registered, entry points), without loading any."""
    return _REGISTRY.names()


def algorithm_spec(name: str) -> AlgorithmSpec:
    """The spec of ``name``; :class:`UnknownAlgorithmError` lists the known names."""
    return _REGISTRY.get(name)


def register_algorithm(
    spec: AlgorithmSpec | str, *, name: str | None = None, overwrite: bool = False
) -> None:
    """Add an algorithm at run time: a spec, or ``"module:attr"`` of one (then give ``name``)."""
    if isinstance(spec, AlgorithmSpec):
        _REGISTRY.register(name or spec.name, spec, overwrite=overwrite)
    elif name is None:
        raise ValueError("register_algorithm('module:attr') needs name=")
    else:
        _REGISTRY.register(name, spec, overwrite=overwrite)


def unregister_algorithm(name: str) -> None:
    _REGISTRY.unregister(name)


def run_label(cfg: ExperimentConfig) -> str:
    """The name of ``cfg``'s algorithm variant in log directories, figures and progress lines:
    ``qmix``, ``qmix-none``, ``vdn``, ``bdps``, ``bdps-individual`` (``AlgorithmSpec.label``)."""
    return algorithm_spec(cfg.algorithm.name).label(cfg)


def algorithm_variants() -> dict[str, dict[str, Any]]:
    """Every registered algorithm in each of its sharing modes and named variants, as run label
    -> dotted config overrides: ``{"qmix": {"algorithm.name": "qmix", "network.sharing":
    "full"}, "qmix-none": ..., "bdps-individual": {"algorithm.name": "bdps", "bdps.levels": 1},
    ...}`` (the labels of :meth:`AlgorithmSpec.label`). The contract tests and the benchmarks'
    ``--modes`` run these."""
    out: dict[str, dict[str, Any]] = {}
    for name in available_algorithms():
        spec = algorithm_spec(name)
        for sharing in spec.sharing:
            label = name if sharing == spec.sharing[0] else f"{name}-{sharing}"
            out[label] = {"algorithm.name": name, "network.sharing": sharing}
        for variant, overrides in spec.variants.items():
            out[f"{name}-{variant}"] = {"algorithm.name": name, **overrides}
    return out


def build_algorithm(cfg: ExperimentConfig, spec: Any) -> Any:
    """The Tianshou algorithm (with its policy) that ``cfg.algorithm.name`` builds for an env
    of sizes ``spec`` (a :class:`~bdps_agents.training.EnvSpec`), after the env checks."""
    from bdps_agents.memory import check_network_memory

    cfg.check_env(spec.n_agents, spec.episode_limit, spec.n_actions)
    check_network_memory(cfg.network.hidden_dim, spec)
    return algorithm_spec(cfg.algorithm.name).builder()(cfg, spec)


def validate_algorithm_sections(sections: dict[str, Any], chosen: str) -> None:
    """The algorithms' own sections of a config (its extra keys; replaced in place by their
    options models): ``ValueError`` for an unknown section, and for the section of an algorithm
    other than ``chosen``, which would be stored unchecked and ignored (an empty one holds
    nothing to ignore: dropped, e.g. from a QMIX run's config.json)."""
    from pydantic import ValidationError

    from bdps_agents.config import CORE_SECTIONS

    known = available_algorithms()
    for key, value in list(sections.items()):
        if key not in known:
            raise ValueError(
                f"unknown section {key!r}: the sections are {', '.join(CORE_SECTIONS)}, "
                f"and one per algorithm, named after it ({', '.join(known)})"
            )
        if key != chosen and value in ({}, None):
            del sections[key]
            continue
        if key != chosen:
            raise ValueError(
                f"section {key!r} holds settings of algorithm {key}, but the chosen algorithm "
                f"is {chosen!r}: drop the {key}.* settings, or choose it (--algo {key})"
            )
        model = algorithm_spec(key).options
        if not isinstance(value, model):
            try:
                sections[key] = model.model_validate(value)
            except ValidationError as err:
                raise ValueError(_section_errors(err, key)) from None


def _section_errors(err: Any, section: str) -> str:
    items = []
    for e in err.errors():
        loc = ".".join(str(p) for p in (section, *e["loc"]))
        items.append(f"{loc}: {e['msg'].removeprefix('Value error, ')} (got {e.get('input')!r})")
    return "; ".join(items)
