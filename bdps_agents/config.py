"""Typed, validated configuration: one pydantic model per component.

A run is described by an :class:`ExperimentConfig`. Scenario presets are YAML files shipped in
``bdps_agents/scenarios`` (``load_scenario("lbf/8x8-2p-2f-coop")``); command-line overrides use
dotted paths (``algorithm.lr=1e-3``) and merge into the preset key by key (:func:`merge_overrides`).
Every model forbids unknown keys, so a typo is an error that names the field instead of a silently
ignored setting; values are not coerced (``true`` is no integer, ``"0.1"`` no float) and floats
must be finite.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A configuration or scenario file is invalid; the message names the offending field."""


# --algo names and the network.sharing modes each one covers, its default first
ALGORITHMS: dict[str, tuple[str, ...]] = {
    "qmix": ("full", "none"),
    "bdps": ("bilevel", "individual"),
}


class ResultsError(ValueError):
    """A results table (``bdps plot``) that cannot be read: malformed, or empty."""


class _Strict(BaseModel):
    # strict: no coercion, so `total_steps: true` or `seeds: [true]` are errors, not 1 (an int
    # still passes as a float: `lr: 1`); allow_inf_nan: .inf/.nan pass `gt=0` bounds otherwise
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False
    )


def default_vector_env(adapter: Any) -> str:
    """What ``env.vector_env: auto`` means for ``adapter``."""
    return "smax_batched" if adapter == "smax" else "dummy"


class EnvConfig(_Strict):
    """Which adapter to build, with what arguments, and how many copies."""

    adapter: str = Field("lbf", min_length=1, description="name in the adapter registry")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to the adapter")
    reward_aggregation: Literal["sum", "mean"] = "sum"
    num_train_envs: int = Field(8, ge=1)
    num_test_envs: int = Field(8, ge=1)

    @field_validator("adapter")
    @classmethod
    def _known_adapter(cls, name: str) -> str:
        # the registry lists names without importing any simulator
        from bdps_agents.adapters import available_adapters

        known = available_adapters()
        if name not in known:
            raise ValueError(f"unknown environment adapter {name!r}; known adapters: {known}")
        return name

    vector_env: Literal["auto", "dummy", "subproc", "ray", "smax_batched"] = Field(
        "auto",
        description="Tianshou vector env: in-process, subprocesses, Ray actors, or (adapter "
        "smax only) all SMAX envs stepped in one jitted call; auto (resolved when the config "
        "is read) = smax_batched for the smax adapter (the same episodes, several times the "
        "steps/s: benchmarks/smax_vector.py), dummy otherwise",
    )

    @field_validator("kwargs")
    @classmethod
    def _adapter_accepts_kwargs(
        cls, kwargs: dict[str, Any], info: ValidationInfo
    ) -> dict[str, Any]:
        # checked here rather than when the env is built: the error then names env.kwargs and
        # comes before any training starts (imports the adapter module, not its simulator)
        from bdps_agents.adapters import AdapterLoadError, check_adapter_kwargs

        adapter = info.data.get("adapter")
        if adapter is None:  # invalid adapter: already reported
            return kwargs
        try:
            check_adapter_kwargs(adapter, kwargs)
        except AdapterLoadError:
            pass  # building the env reports it, with the install hint
        except (TypeError, ValueError) as err:
            raise ValueError(str(err)) from None
        return kwargs

    @model_validator(mode="before")
    @classmethod
    def _resolve_auto_vector_env(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("vector_env", "auto") == "auto":
            data = {**data, "vector_env": default_vector_env(data.get("adapter", "lbf"))}
        return data

    @model_validator(mode="after")
    def _batched_smax_only(self) -> EnvConfig:
        if self.vector_env == "smax_batched" and self.adapter != "smax":
            raise ValueError(
                f"env.vector_env=smax_batched batches SMAX maps; env.adapter is {self.adapter!r}"
            )
        return self


class NetworkConfig(_Strict):
    """Agent network and mixer."""

    hidden_dim: int = Field(64, ge=1, description="GRU hidden size")
    sharing: Literal["full", "none", "individual", "bilevel"] = Field(
        "full",
        description="full: one network for all agents (QMIX); none: one per agent; "
        "individual: k role networks (BDPS single level); bilevel: roles and groups (BDPS)",
    )
    agent_id_input: bool = True
    last_action_input: bool = True
    mixer: Literal["qmix", "vdn"] = "qmix"
    mixing_embed_dim: int = Field(32, ge=1)
    hypernet_hidden_dim: int = Field(64, ge=1)


class BDPSConfig(_Strict):
    """Role and group selectors (paper Sec. 3; used when network.sharing is individual/bilevel).

    ``n_roles`` = k, ``n_groups`` = m, ``role_interval`` = T_U, ``group_interval`` T_V = e * T_U
    with ``e = group_interval_multiple``. Paper constraint: n >= k >= m >= 2 (n is checked when
    the environment is built), T_U and T_V below the episode limit.
    """

    n_roles: int = Field(2, ge=2, description="k virtual roles")
    n_groups: int = Field(2, ge=2, description="m groups")
    role_interval: int = Field(5, ge=1, description="T_U: env steps between role updates")
    group_interval_multiple: int = Field(1, ge=1, description="e in T_V = e * T_U")
    # chosen by a sweep on standardised windows (docs/results.md, "Roles that carry
    # information"); the old 1e-4 only hid a scale problem of raw windows
    kl_weight: float = Field(0.01, ge=0.0, description="lambda in Eq. 7")
    standardize_advantages: bool = Field(
        True,
        description="feed the role selector's VAE advantage windows standardised by a running "
        "mean and std of their elements (kept in checkpoints); false = raw advantages",
    )
    # the names of bdps.GROUP_INPUTS (not imported: the config stays free of torch)
    group_selector_input: Literal["roles", "roles+id", "roles+trajectory"] = Field(
        "roles",
        description="what the group selector reads per agent: its one-hot role (paper Sec. "
        "3.2.1); the role and its one-hot agent id; or the role and its role network's hidden "
        "state h^U (Eq. 8's tau). Only the last two let agents with equal roles take different "
        "groups (docs/results.md)",
    )
    sample_roles_at_test: bool = Field(
        False,
        description="sample the role latent z in test episodes too; false = z = mu there, so "
        "evaluation is deterministic",
    )
    role_loss_weight: float = Field(1.0, ge=0.0, description="weight of L_U in the total loss")
    group_loss_weight: float = Field(1.0, ge=0.0, description="weight of L_V in the total loss")
    role_gru_dim: int = Field(64, ge=1)
    vae_hidden_dim: int = Field(64, ge=1)
    group_embed_dim: int = Field(64, ge=1)
    gat_dim: int = Field(128, ge=1, description="GAT output (App. F: 128)")
    group_gru_dim: int = Field(64, ge=1, description="group selector GRU (App. F: 64)")

    @property
    def group_interval(self) -> int:
        return self.role_interval * self.group_interval_multiple

    @model_validator(mode="after")
    def _roles_cover_groups(self) -> BDPSConfig:
        if self.n_roles < self.n_groups:
            raise ValueError(
                f"bdps.n_roles (k={self.n_roles}) must be >= bdps.n_groups (m={self.n_groups}): "
                "the paper requires n >= k >= m >= 2"
            )
        return self


class ExplorationConfig(_Strict):
    """Linear ε schedule over env steps (masked ε-greedy)."""

    eps_start: float = Field(1.0, ge=0.0, le=1.0)
    eps_end: float = Field(0.05, ge=0.0, le=1.0)
    anneal_steps: int = Field(200_000, ge=0)
    eps_test: float = Field(0.0, ge=0.0, le=1.0)


class ReplayConfig(_Strict):
    """Episode replay: capacity and batch are counted in whole episodes."""

    capacity_episodes: int = Field(5000, ge=1)
    batch_episodes: int = Field(32, ge=1)
    warmup_episodes: int = Field(32, ge=1, description="episodes collected (ε=1) before learning")

    @model_validator(mode="after")
    def _batch_fits(self) -> ReplayConfig:
        if self.batch_episodes > self.capacity_episodes:
            raise ValueError(
                f"replay.batch_episodes ({self.batch_episodes}) exceeds "
                f"replay.capacity_episodes ({self.capacity_episodes})"
            )
        return self


class AlgorithmConfig(_Strict):
    """Learner: targets, optimiser, target network."""

    gamma: float = Field(0.99, gt=0.0, le=1.0)
    lr: float = Field(5e-4, gt=0.0)
    td_lambda: float = Field(0.6, ge=0.0, le=1.0, description="0 = one-step targets (Eq. 9)")
    double_q: bool = True
    target_update_interval: int = Field(200, ge=1, description="gradient steps between copies")
    max_grad_norm: float = Field(10.0, gt=0.0)
    reward_scale: float = Field(1.0, gt=0.0, description="rewards are multiplied by this")


class TrainingConfig(_Strict):
    """Driver: budget, update ratio, evaluation, logging."""

    total_steps: int = Field(200_000, ge=1, description="env steps")
    seed: int = Field(0, ge=0)
    steps_per_update: int = Field(50, ge=1, description="env steps collected per gradient step")
    test_interval: int = Field(
        10_000,
        ge=1,
        description="most env steps between greedy tests: the budget is split into equal "
        "epochs of whole collect steps, each ending with a test (bdps train prints the plan)",
    )
    checkpoint_interval: int | None = Field(
        10_000,
        ge=1,
        description="env steps between checkpoints (default: test_interval); written at the "
        "first epoch end (test) at least this many steps after the previous one; "
        "None = only the final checkpoint",
    )
    test_episodes: int = Field(32, ge=1)
    log_interval: int = Field(1000, ge=1, description="env steps between training/update logs")
    torch_threads: int = Field(1, ge=1)
    reuse_freed_memory: bool = Field(
        True,
        description="let glibc keep freed blocks of up to 64 MiB for reuse instead of unmapping "
        "them (mallopt; Linux only): the update's MB-sized temporaries then cost no page faults, "
        "about 15% faster updates",
    )
    overlap_learning: bool = Field(
        False,
        description="run the gradient steps in a child process while collection goes on "
        "(bdps_agents.learner_process): ≈1.7x the end-to-end steps/s of QMIX on LBF with 2 cores; "
        "the policy that collects lags the learner by one gradient step",
    )
    device: Literal["cpu"] = Field(
        "cpu", description="only cpu: nothing moves the networks to a GPU yet"
    )
    logdir: str = "runs"
    progress: bool = True

    @field_validator("device", mode="before")
    @classmethod
    def _cpu_only(cls, device: Any) -> Any:
        # the field is read nowhere yet: anything but cpu would silently train on the CPU
        if device != "cpu":
            raise ValueError("must be 'cpu': GPU training is not wired yet")
        return device

    @model_validator(mode="before")
    @classmethod
    def _checkpoint_interval_default(cls, data: Any) -> Any:
        """``checkpoint_interval`` defaults to ``test_interval``: a checkpoint after every test."""
        if isinstance(data, dict) and "checkpoint_interval" not in data:
            interval = data.get("test_interval", 10_000)
            if isinstance(interval, int) and not isinstance(interval, bool) and interval >= 1:
                data = {**data, "checkpoint_interval": interval}
        return data


class ExperimentConfig(_Strict):
    """A whole run. ``scenario`` is informational (the preset it came from)."""

    scenario: str = "custom"
    env: EnvConfig = Field(default_factory=EnvConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    bdps: BDPSConfig = Field(default_factory=BDPSConfig)
    exploration: ExplorationConfig = Field(default_factory=ExplorationConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @property
    def uses_selectors(self) -> bool:
        return self.network.sharing in ("individual", "bilevel")

    def check_env(self, n_agents: int, episode_limit: int | None) -> None:
        """Constraints that need the environment's sizes (paper Def. 1, App. G)."""
        if not self.uses_selectors:
            return
        b = self.bdps
        bilevel = self.network.sharing == "bilevel"  # single-level BDPS has no groups
        try:
            check_sharing_sizes(
                n_agents=n_agents,
                n_roles=b.n_roles,
                n_groups=b.n_groups if bilevel else None,
                role_interval=b.role_interval,
                group_interval=b.group_interval if bilevel else None,
                episode_limit=episode_limit,
                names={
                    "n_roles": "bdps.n_roles",
                    "n_groups": "bdps.n_groups",
                    "role_interval": "bdps.role_interval (T_U)",
                    "group_interval": "group interval T_V = bdps.role_interval * "
                    "bdps.group_interval_multiple",
                },
                warn_unknown_limit=False,  # BDPSPolicy, built next, states it
            )
        except ValueError as err:
            raise ConfigError(str(err)) from None


def check_sharing_sizes(
    *,
    n_agents: int,
    n_roles: int,
    n_groups: int | None,
    role_interval: int,
    group_interval: int | None,
    episode_limit: int | None,
    names: dict[str, str] | None = None,
    warn_unknown_limit: bool = True,
) -> None:
    """BDPS's Def. 1: n >= k >= m >= 2, and T_U, T_V below the episode length (else no
    decision after t = 0 ever falls inside an episode and the selectors never learn).

    ``n_groups``/``group_interval`` are None in single-level mode. Raises ``ValueError`` naming
    each size as ``names`` spells it (default: the keyword's name). An unknown episode length
    is stated in a ``UserWarning`` (``warn_unknown_limit``), not skipped silently."""
    keys = ("n_roles", "n_groups", "role_interval", "group_interval")
    names = {**{key: key for key in keys}, **(names or {})}
    k_name, m_name = names["n_roles"], names["n_groups"]
    if n_roles < 2:
        raise ValueError(
            f"{k_name} (k={n_roles}) must be >= 2: the paper requires n >= k >= m >= 2"
        )
    if n_agents < n_roles:
        raise ValueError(
            f"{k_name} (k={n_roles}) exceeds the number of agents (n={n_agents}): "
            "the paper requires n >= k >= m >= 2"
        )
    if n_groups is not None:
        if n_groups < 2:
            raise ValueError(
                f"{m_name} (m={n_groups}) must be >= 2: the paper requires n >= k >= m >= 2"
            )
        if n_groups > n_roles:
            raise ValueError(
                f"{m_name} (m={n_groups}) exceeds {k_name} (k={n_roles}): "
                "the paper requires n >= k >= m >= 2"
            )
    intervals = [("role_interval", role_interval)]
    if group_interval is not None:
        intervals.append(("group_interval", group_interval))
    for key, value in intervals:
        if value < 1:
            raise ValueError(f"{names[key]} = {value} must be >= 1")
    if episode_limit is None:
        if not warn_unknown_limit:
            return
        warnings.warn(
            "the episode length is unknown, so "
            + " and ".join(f"{names[key]} = {value}" for key, value in intervals)
            + " cannot be checked against it (they must be below it, or the selectors never "
            "decide inside an episode): give JointEnv(..., episode_limit=N)",
            UserWarning,
            stacklevel=3,
        )
        return
    for key, value in intervals:
        if value >= episode_limit:
            raise ValueError(
                f"{names[key]} = {value} must be below the episode limit ({episode_limit})"
            )


# ---------------------------------------------------------------------------------------------
# loading


def _format_validation_error(err: ValidationError, source: str) -> str:
    """One line per mistake; a single mistake stays on the ``invalid configuration`` line."""
    items = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"].removeprefix("Value error, ")  # pydantic's prefix for our own checks
        items.append(f"{loc}: {msg} (got {e.get('input')!r})")
    if len(items) == 1:
        return f"invalid configuration ({source}): {items[0]}"
    return "\n".join([f"invalid configuration ({source}):", *(f"  {item}" for item in items)])


def build_config(data: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate a nested dict into an :class:`ExperimentConfig`, raising :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration ({source}): top level must be a mapping")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def scenario_names() -> list[str]:
    """Presets shipped with the package, as ``family/name``."""
    root = resources.files("bdps_agents.scenarios")
    names = []
    for family in root.iterdir():
        if family.is_dir() and not family.name.startswith("_"):
            names += [
                f"{family.name}/{f.name[:-5]}" for f in family.iterdir() if f.name.endswith(".yaml")
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


def _read_yaml(text: str | bytes, source: str) -> dict[str, Any]:
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
        data = _read_yaml(path.read_bytes(), str(path))
        data.setdefault("scenario", path.stem)
        return data
    family, _, name = scenario.partition("/")
    res = resources.files("bdps_agents.scenarios").joinpath(family, f"{name}.yaml")
    if not name or not res.is_file():
        known = ", ".join(scenario_names())
        raise ConfigError(f"unknown scenario {scenario!r}; known presets: {known}")
    data = _read_yaml(res.read_bytes(), f"scenario {scenario}")
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


def load_config(scenario: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """Preset or YAML path, plus dotted overrides, validated."""
    data = apply_overrides(load_scenario_dict(scenario), overrides or [])
    return build_config(data, source=scenario)
