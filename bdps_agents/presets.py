"""Scenario presets, YAML files and dotted overrides: what becomes an :class:`ExperimentConfig`.

A run's settings come, lowest priority first, from: the scenario preset (``lbf/8x8-2p-2f``: env
and budget), the algorithm's preset for that scenario (its own section, e.g. BDPS's k, m, T_U
and T_V of the paper's Table 2 / App. G, ``bdps_agents/algorithms/bdps/presets``), and the
overrides (``--set``, ``--algo``, experiment grids), merged key by key (:func:`merge_overrides`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bdps_agents.config import ConfigError, ExperimentConfig, build_config
from bdps_agents.legacy import upgrade_legacy_config


def _scenario_dir(family: str) -> Any | None:
    """Where the presets of a family live: a built-in adapter's folder,
    ``adapters/<family>/scenarios`` (read as package data of ``bdps_agents``, without importing
    any adapter), else the ``scenarios`` folder of a third-party adapter's package
    (:func:`~bdps_agents.adapters.adapter_scenario_dir`); None if there is none."""
    builtin = resources.files("bdps_agents").joinpath("adapters", family, "scenarios")
    if builtin.is_dir():
        return builtin
    from bdps_agents.adapters import adapter_scenario_dir

    return adapter_scenario_dir(family)


def scenario_names() -> list[str]:
    """Presets of the built-in and the installed adapters, as ``family/name`` (family = the
    adapter's name)."""
    from bdps_agents.adapters import available_adapters

    names = []
    for family in available_adapters():
        presets = _scenario_dir(family)
        if presets is not None:
            names += [
                f"{family}/{f.name[:-5]}" for f in presets.iterdir() if f.name.endswith(".yaml")
            ]
    return sorted(names)


class _DuplicateKeyError(Exception):
    def __init__(self, key: Any, first_line: int, line: int) -> None:
        super().__init__(key, first_line, line)
        self.key, self.first_line, self.line = key, first_line, line


class _YAMLLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses duplicate keys (PyYAML keeps the last one silently) and
    reads ``1e-3`` as a float as YAML 1.2 does (PyYAML's YAML 1.1 needs ``1.0e-3``, and the
    strict config would refuse the string)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may repeat base's keys
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKeyError(key, seen[key], line)
                seen[key] = line
            except TypeError:  # unhashable key: SafeLoader reports it
                pass
        return super().construct_mapping(node, deep=deep)


_YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _load_yaml(text: str, source: str) -> Any:
    """YAML text parsed by :class:`_YAMLLoader`; a duplicate key is a :class:`ConfigError`
    naming ``source``, the key and its lines, other YAML errors propagate."""
    try:
        return yaml.load(text, Loader=_YAMLLoader)  # a SafeLoader subclass: safe
    except _DuplicateKeyError as dup:
        raise ConfigError(
            f"duplicate key {dup.key!r} in {source} (lines {dup.first_line} and {dup.line}): "
            "give each key once"
        ) from None


def read_yaml(text: str | bytes, source: str) -> dict[str, Any]:
    """A scenario or experiment file's mapping. Refused with a :class:`ConfigError` naming
    ``source``: non-UTF-8 bytes, invalid YAML, a duplicate key, an empty file, a non-mapping."""
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8-sig")  # -sig: a byte order mark is not content
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise ConfigError(
                f"{source} is not UTF-8 text (byte 0x{raw[err.start]:02x} on line {line}): "
                "save it as UTF-8"
            ) from None
    try:
        data = _load_yaml(text, source)
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML in {source}: {err}") from None
    if data is None:  # an empty file, or only comments: almost certainly not what was meant
        raise ConfigError(f"{source} is empty: expected a mapping of config sections")
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration ({source}): top level must be a mapping")
    return data


def load_scenario_dict(scenario: str) -> dict[str, Any]:
    """Raw dict of a preset name (``lbf/8x8-2p-2f-coop``) or a path to a YAML file."""
    path = Path(scenario)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"scenario file not found: {scenario}")
        data = read_yaml(path.read_bytes(), str(path))
        data.setdefault("scenario", path.stem)
        return data
    family, _, name = scenario.partition("/")
    presets = _scenario_dir(family) if family and name else None
    res = presets.joinpath(f"{name}.yaml") if presets is not None else None
    if res is None or not res.is_file():
        known = ", ".join(scenario_names())
        raise ConfigError(f"unknown scenario {scenario!r}; known presets: {known}")
    data = read_yaml(res.read_bytes(), f"scenario {scenario}")
    data.setdefault("scenario", scenario)
    return data


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b  # True and 1 are different values here


def nest_overrides(
    entries: Iterable[tuple[str, Any, str]], context: str | None = "overrides"
) -> dict[str, Any]:
    """``(dotted key, value, origin)`` entries as one nested mapping of overrides.

    ``"training.total_steps": 100`` and ``"training": {"seed": 3}`` combine into
    ``{"training": {"total_steps": 100, "seed": 3}}``: a mapping value is taken key by key (its
    own keys are not split at dots). The same leaf given twice with different values, or a key
    given both as a value and as a section, raises :class:`ConfigError` naming both origins
    (prefixed by ``context``, if any).
    """
    tree: dict[str, Any] = {}
    origins: dict[tuple[Any, ...], str] = {}  # path -> origin of the value or section there

    def conflict(path: tuple[Any, ...], old: Any, new: Any, origin: str) -> ConfigError:
        def show(value: Any) -> str:
            return "a section" if isinstance(value, Mapping) else repr(value)

        prefix = f"{context}: " if context else ""
        return ConfigError(
            f"{prefix}{'.'.join(map(str, path))} is given twice: {show(old)} (from "
            f"{origins[path]}) and {show(new)} (from {origin}); keep one"
        )

    def put(path: tuple[Any, ...], value: Any, origin: str) -> None:
        node = tree
        for depth in range(1, len(path)):  # the sections on the way
            key, here = path[depth - 1], path[:depth]
            if key not in node:
                node[key], origins[here] = {}, origin
            elif not isinstance(node[key], dict):
                raise conflict(here, node[key], {}, origin)
            node = node[key]
        key = path[-1]
        if isinstance(value, Mapping):
            if key not in node:
                node[key], origins[path] = {}, origin
            elif not isinstance(node[key], dict):
                raise conflict(path, node[key], value, origin)
            for sub, sub_value in value.items():
                put((*path, sub), sub_value, origin)
        elif key not in node:
            node[key], origins[path] = copy.deepcopy(value), origin
        elif isinstance(node[key], dict) or not _same(node[key], value):
            raise conflict(path, node[key], value, origin)

    for dotted, value, origin in entries:
        parts = tuple(dotted.split(".")) if isinstance(dotted, str) else (dotted,)
        if "" in parts:
            raise ConfigError(f"key {dotted!r} (from {origin}) has an empty part")
        put(parts, value, origin)
    return tree


def merge_overrides(
    data: Mapping[str, Any],
    entries: Iterable[tuple[str, Any, str]],
    context: str = "overrides",
) -> dict[str, Any]:
    """A deep copy of ``data`` with the overrides ``(dotted key, value, origin)`` merged in.

    The entries are combined by :func:`nest_overrides` (conflicts raise :class:`ConfigError`),
    then merged: a mapping merges into the existing section key by key, any other value
    replaces what is there. ``bdps train --set`` and experiment grids both go through here.
    """

    def merge(base: dict[str, Any], update: Mapping[str, Any]) -> None:
        for key, value in update.items():
            if isinstance(value, Mapping) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = copy.deepcopy(value)

    out = copy.deepcopy(dict(data))
    merge(out, nest_overrides(entries, context))
    return out


def parse_override(item: str) -> tuple[str, Any]:
    """``"section.key=value"`` as ``(dotted key, value parsed as YAML)``; a value that is not
    valid YAML stays a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key or "" in key.split("."):
        raise ConfigError(f"override {item!r} must look like section.key=value")
    try:
        return key, _load_yaml(raw, f"override {item!r}")
    except yaml.YAMLError:
        return key, raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (value parsed as YAML) to a nested dict copy.

    ``bdps={n_roles: 3}`` changes only ``bdps.n_roles`` (see :func:`merge_overrides`); giving
    the same key twice with different values is a :class:`ConfigError` naming both.
    """
    entries = [(*parse_override(item), repr(item)) for item in overrides]
    return merge_overrides(data, entries)


def scenario_dict(
    scenario: str, *layers: Iterable[tuple[str, Any, str]], context: str = "overrides"
) -> dict[str, Any]:
    """The raw config of a preset or YAML file with layers of overrides ``(dotted key, value,
    origin)`` merged in order (:func:`merge_overrides`; a later layer wins), and, beneath them
    all, the chosen algorithm's preset for the scenario.

    The algorithm is the one the overrides, else the file, name (``algorithm.name``; QMIX by
    default); its preset fills only the keys of its section that the file does not set."""
    from bdps_agents.algorithms import UnknownAlgorithmError, algorithm_spec

    stack = [list(layer) for layer in layers]

    def merged(base: dict[str, Any]) -> dict[str, Any]:
        for layer in stack:
            base = merge_overrides(base, layer, context)
        return base

    base = load_scenario_dict(scenario)
    data = merged(base)
    try:  # the old spellings name the algorithm too (validation warns about them)
        algorithm = upgrade_legacy_config(data, warn=False).get("algorithm")
        name = algorithm.get("name", "qmix") if isinstance(algorithm, dict) else "qmix"
        preset = algorithm_spec(name).preset(str(data.get("scenario", "")))
    except (UnknownAlgorithmError, TypeError, ValueError):  # reported by validation
        return data
    if not preset:
        return data
    section = base.get(name)
    own = section if isinstance(section, dict) else {}
    under = {key: value for key, value in preset.items() if key not in own}
    return merged(merge_overrides(base, [(name, under, f"{name} preset")], context))


def load_config(scenario: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """Preset or YAML path, the algorithm's preset for it, and dotted overrides, validated."""
    entries = [(*parse_override(item), repr(item)) for item in overrides or []]
    return build_config(scenario_dict(scenario, entries), source=scenario)
