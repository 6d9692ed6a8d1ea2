"""Typed, validated configuration: one pydantic model per component.

A run is described by an :class:`ExperimentConfig`: the sections below, plus the chosen
algorithm's own section (its options model lives in its folder, ``bdps_agents/algorithms``).
Reading presets, YAML files and ``--set`` overrides is :mod:`bdps_agents.presets`.
Every model forbids unknown keys, so a typo is an error that names the field instead of a silently
ignored setting; values are not coerced (``true`` is no integer, ``"0.1"`` no float) and floats
must be finite.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bdps_agents.legacy import upgrade_legacy_config

# numpy's legacy seeding (training.seed_everything) takes seeds from 0 to 2**32 - 1
SEED_MAX = 2**32 - 1

# training.device: resolved (and checked against the machine) by bdps_agents.device
DEVICE_PATTERN = r"^(cpu|cuda|cuda:\d+|auto)$"


def known_mixer(name: str | None) -> str | None:
    """A mixer setting: None (the algorithm's default) or a registered mixer's name."""
    from bdps_agents.algorithms.mixers import available_mixers  # lists names, loads none

    known = available_mixers()
    if name is not None and name not in known:
        raise ValueError(f"unknown mixer {name!r}; known mixers: {', '.join(known)}")
    return name


class ConfigError(ValueError):
    """A configuration or scenario file is invalid; the message names the offending field."""


class ResultsError(ValueError):
    """A results table (``bdps plot``) that cannot be read: malformed, or empty."""


class StrictModel(BaseModel):
    # strict: no coercion, so `total_steps: true` or `seeds: [true]` are errors, not 1 (an int
    # still passes as a float: `lr: 1`); allow_inf_nan: .inf/.nan pass `gt=0` bounds otherwise
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False
    )


def default_vector_env(adapter: Any) -> str:
    """What ``env.vector_env: auto`` means for ``adapter``."""
    return "smax_batched" if adapter == "smax" else "dummy"


class EnvConfig(StrictModel):
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


class NetworkConfig(StrictModel):
    """Agent network and mixer."""

    hidden_dim: int = Field(64, ge=1, description="GRU hidden size")
    sharing: Literal["full", "none", "roles"] | None = Field(
        None,
        description="full: one network for all agents; none: one per agent; roles: one per "
        "(dynamically assigned) role, as BDPS does. None (default) = the algorithm's default; "
        "each algorithm accepts only some (bdps_agents.algorithms.AlgorithmSpec.sharing)",
    )
    agent_id_input: bool = True
    last_action_input: bool = True
    mixing_embed_dim: int = Field(
        32, ge=1, description="QMIX's mixing layer; QPLEX's attention queries and keys"
    )
    hypernet_hidden_dim: int = Field(64, ge=1, description="hidden size of the hypernetworks")
    qplex_heads: int = Field(4, ge=1, description="QPLEX: attention heads of w_i(s)")
    qplex_kernels: int = Field(10, ge=1, description="QPLEX: attention heads of λ_i(s, a)")


class ExplorationConfig(StrictModel):
    """Linear ε schedule over env steps (masked ε-greedy)."""

    eps_start: float = Field(1.0, ge=0.0, le=1.0)
    eps_end: float = Field(0.05, ge=0.0, le=1.0)
    anneal_steps: int = Field(200_000, ge=0)
    eps_test: float = Field(0.0, ge=0.0, le=1.0)


class ReplayConfig(StrictModel):
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


class AlgorithmConfig(StrictModel):
    """Which algorithm (``name``, a registered one), and the settings of the value-decomposition
    learner every registered algorithm shares: targets, optimiser, target network. An
    algorithm's own settings live in the section named after it (``bdps: {...}``)."""

    name: str = Field("qmix", min_length=1, description="a registered algorithm (--algo)")
    mixer: str | None = Field(
        None,
        min_length=1,
        description="the mixer of the agents' Q-values, a registered one (qmix, vdn, qplex); "
        "None = the algorithm's own default (qmix; vdn for --algo vdn)",
    )
    gamma: float = Field(0.99, gt=0.0, le=1.0)
    lr: float = Field(5e-4, gt=0.0)
    td_lambda: float = Field(0.6, ge=0.0, le=1.0, description="0 = one-step targets (Eq. 9)")
    double_q: bool = True
    target_update_interval: int = Field(200, ge=1, description="gradient steps between copies")
    max_grad_norm: float = Field(10.0, gt=0.0)
    reward_scale: float = Field(1.0, gt=0.0, description="rewards are multiplied by this")

    @field_validator("name")
    @classmethod
    def _known_algorithm(cls, name: str) -> str:
        from bdps_agents.algorithms import available_algorithms  # lists names, loads none

        known = available_algorithms()
        if name not in known:
            raise ValueError(f"unknown algorithm {name!r}; known algorithms: {', '.join(known)}")
        return name

    @field_validator("mixer")
    @classmethod
    def _known_mixer(cls, name: str | None) -> str | None:
        return known_mixer(name)


class TrainingConfig(StrictModel):
    """Driver: budget, update ratio, evaluation, logging."""

    total_steps: int = Field(200_000, ge=1, description="env steps")
    seed: int = Field(0, ge=0, le=SEED_MAX)
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
    selector_value_episodes: int = Field(
        0,
        ge=0,
        description="role-based methods: at each test, also this many greedy episodes with the "
        "choices as made and with random ones, paired on env seeds (test/role_value, ...)",
    )
    log_interval: int = Field(1000, ge=1, description="env steps between training/update logs")
    torch_threads: int = Field(1, ge=1)
    reuse_freed_memory: bool = Field(
        True,
        description="let glibc keep freed blocks of up to 64 MiB for reuse instead of unmapping "
        "them (mallopt; Linux only): the update's MB-sized temporaries then cost no page faults, "
        "faster updates (benchmarks/README.md)",
    )
    overlap_learning: bool = Field(
        False,
        description="run the gradient steps in a child process while collection goes on "
        "(bdps_agents.learner_process): more end-to-end steps/s with 2 cores "
        "(benchmarks/README.md); "
        "the policy that collects lags the learner by one gradient step",
    )
    device: str = Field(
        "cpu",
        description="where the gradient steps run: cpu, cuda, cuda:N, or auto (CUDA when "
        "available). Acting stays on the CPU; on a GPU the learner is a copy whose acting "
        "networks are copied back after each update (bdps_agents.device). Asking for CUDA where "
        "there is none is an error when the run is built",
    )
    logdir: str = "runs"
    progress: bool = True

    @field_validator("device")
    @classmethod
    def _device_name(cls, device: str) -> str:
        if not re.match(DEVICE_PATTERN, device):
            raise ValueError(f"must be cpu, cuda, cuda:N or auto, got {device!r}")
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


CORE_SECTIONS = ("env", "network", "exploration", "replay", "algorithm", "training")


class ExperimentConfig(StrictModel):
    """A whole run. ``scenario`` is informational (the preset it came from).

    Besides the sections below it holds the chosen algorithm's own section, named after it
    (``bdps: {n_roles: 3}``) and validated by its options model; it is always there
    (:attr:`options`). Another algorithm's section is refused: it would be ignored."""

    # extra keys are the algorithms' sections; anything else is refused by _algorithm_sections
    model_config = ConfigDict(
        extra="allow", validate_assignment=True, strict=True, allow_inf_nan=False
    )

    scenario: str = "custom"
    env: EnvConfig = Field(default_factory=EnvConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    exploration: ExplorationConfig = Field(default_factory=ExplorationConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @model_validator(mode="before")
    @classmethod
    def _legacy_spelling(cls, data: Any) -> Any:
        return upgrade_legacy_config(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _algorithm_sections(self) -> ExperimentConfig:
        from bdps_agents.algorithms import algorithm_spec, validate_algorithm_sections

        extra = self.__pydantic_extra__ if self.__pydantic_extra__ is not None else {}
        validate_algorithm_sections(extra, self.algorithm.name)
        spec = algorithm_spec(self.algorithm.name)
        extra.setdefault(spec.name, spec.options())
        if self.network.sharing is None:
            self.network.sharing = spec.sharing[0]  # type: ignore[assignment]
        check_sharing_mode(self)
        return self

    def section(self, name: str) -> Any:
        """The options of algorithm ``name`` (its defaults if the config has no such section)."""
        from bdps_agents.algorithms import algorithm_spec

        extra = self.__pydantic_extra__ or {}
        # not stored: reading a section that the config lacks does not change the config
        return extra[name] if name in extra else algorithm_spec(name).options()

    @property
    def options(self) -> Any:
        """The chosen algorithm's own settings (an ``AlgorithmOptions`` of its spec)."""
        return self.section(self.algorithm.name)

    def check_env(
        self, n_agents: int, episode_limit: int | None, n_actions: int | None = None
    ) -> None:
        """Constraints that need the environment's sizes (e.g. BDPS's Def. 1), as ConfigError."""
        try:
            check_sharing_mode(self)
            self.options.check_env(n_agents, episode_limit, n_actions)
        except ValueError as err:
            raise ConfigError(str(err)) from None


def check_sharing_mode(cfg: ExperimentConfig) -> None:
    """``ValueError`` unless the chosen algorithm shares networks as ``network.sharing`` says."""
    from bdps_agents.algorithms import algorithm_spec

    spec = algorithm_spec(cfg.algorithm.name)
    if cfg.network.sharing is not None and cfg.network.sharing not in spec.sharing:
        raise ValueError(
            f"network.sharing={cfg.network.sharing} is not a mode of algorithm {spec.name!r}, "
            f"which shares {' or '.join(spec.sharing)}"
            + ("; BDPS shares by roles: --algo bdps" if cfg.network.sharing == "roles" else "")
        )


# ---------------------------------------------------------------------------------------------
# validation


def _format_validation_error(err: ValidationError, source: str) -> str:
    """One line per mistake; a single mistake stays on the ``invalid configuration`` line."""
    items = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")  # pydantic's prefix for our own checks
        # a whole-config check (loc empty) names its keys in msg: the input is everything
        items.append(f"{loc}: {msg} (got {e.get('input')!r})" if loc else msg)
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
