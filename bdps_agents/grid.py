"""An experiment's grid: which scenarios, methods and seeds, each cell's config validated up
front (the file format is described in :mod:`bdps_agents.experiment`)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from bdps_agents.config import (
    SEED_MAX,
    ConfigError,
    ExperimentConfig,
    StrictModel,
    _format_validation_error,
)
from bdps_agents.presets import nest_overrides, read_yaml, scenario_dict


class GridConfig(StrictModel):
    """An experiment: the grid of runs and where their results go."""

    name: str = Field("experiment", min_length=1)
    results_dir: str = Field("results/experiment", min_length=1)
    scenarios: list[str] = Field(min_length=1, description="presets or YAML paths")
    methods: dict[str, dict[str, Any]] = Field(
        min_length=1,
        description='method name -> overrides, e.g. {"algorithm.name": "bdps"}; combined with '
        "`overrides` (the same key with different values in both is an error)",
    )
    seeds: list[Annotated[int, Field(ge=0, le=SEED_MAX)]] = Field(min_length=1)
    total_steps: int | None = Field(None, ge=1, description="overrides training.total_steps")
    overrides: dict[str, Any] = Field(default_factory=dict, description="applied to every run")
    cpus_per_run: float = Field(1.0, gt=0, description="Ray CPUs reserved per run")

    @field_validator("seeds", "scenarios")
    @classmethod
    def _distinct(cls, values: list[Any], info: ValidationInfo) -> list[Any]:
        # a repeated cell would train twice into one directory, the second "resuming" the first
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if twice:
            raise ValueError(f"{info.field_name} must be distinct; given more than once: {twice}")
        return values

    @field_validator("methods")
    @classmethod
    def _method_names(cls, methods: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in methods:
            if not name or "--" in name or "/" in name:
                raise ValueError(f"method name {name!r} must be non-empty without '--' or '/'")
        return {
            name: nest_overrides(_entries(o, f"method {name!r}, "), None)
            for name, o in methods.items()
        }

    @field_validator("overrides")
    @classmethod
    def _nested_overrides(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        # nested once here: dotted and nested keys of one path combine, conflicts are found when
        # the file is read, and `--set overrides.training.seed=...` replaces the leaf it names
        return nest_overrides(_entries(overrides), None)

    def with_overrides(self, items: list[str]) -> GridConfig:
        """This grid with ``KEY=VALUE`` changes to its fields (``bdps experiment --set``, e.g.
        ``total_steps=100000``, ``overrides.training.lr=1e-3``), validated again."""
        from bdps_agents.presets import apply_overrides

        if not items:
            return self
        data = apply_overrides(self.model_dump(mode="json"), items)
        try:
            return GridConfig.model_validate(data)
        except ValueError as err:
            raise ConfigError(f"invalid experiment override {items}: {err}") from None


def _entries(overrides: dict[str, Any], where: str = "") -> list[tuple[str, Any, str]]:
    return [(key, value, f"{where}key {key!r}") for key, value in overrides.items()]


def _run_overrides(
    grid: GridConfig, method: str, seed: int
) -> tuple[list[tuple[str, Any, str]], list[tuple[str, Any, str]]]:
    """What one run changes in its scenario, as two layers of
    :func:`~bdps_agents.presets.merge_overrides` entries: the common overrides, then the
    method's, which win over them (the specific over the general). Each layer also holds the
    grid's own settings, so that e.g. ``training.seed`` in either is reported as clashing with
    ``seeds``, not dropped."""
    own = [("training.seed", seed, "the grid's seeds")]
    if grid.total_steps is not None:
        own.append(("training.total_steps", grid.total_steps, "the grid's total_steps"))
    # many runs: one progress line each
    own.append(("training.progress", False, "the experiment (no progress bars)"))
    common = [(k, v, "overrides") for k, v in grid.overrides.items()]
    specific = [(k, v, f"methods.{method}") for k, v in grid.methods[method].items()]
    return common + own, specific + own


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid, with its fully validated config."""

    run_id: str
    scenario: str
    method: str
    seed: int
    config: ExperimentConfig
    logdir: Path


def load_grid(path_or_name: str | Path) -> GridConfig:
    """An experiment YAML file, or the name of one shipped in ``bdps_agents/experiments``."""
    path = Path(path_or_name)
    if path.is_file():
        data, source = read_yaml(path.read_bytes(), str(path)), str(path)
    else:
        res = resources.files("bdps_agents.experiments").joinpath(f"{path_or_name}.yaml")
        if not res.is_file():
            known = ", ".join(experiment_names())
            raise ConfigError(
                f"experiment {str(path_or_name)!r} is neither a file nor a shipped experiment "
                f"({known})"
            )
        data, source = read_yaml(res.read_text(), f"experiment {path_or_name}"), str(res)
    try:
        return GridConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def experiment_names() -> list[str]:
    root = resources.files("bdps_agents.experiments")
    return sorted(f.name[:-5] for f in root.iterdir() if f.name.endswith(".yaml"))


# most file systems' limit on one name (bytes): a run's directory is named by its run id
MAX_NAME_BYTES = 255


def grid_run_id(scenario: str, method: str, seed: int) -> str:
    """A cell's run id, which names its directory under ``<results_dir>/runs``; ``ConfigError``
    when the name would be too long for a file system (a long method name or scenario path)."""
    run_id = f"{scenario.replace('/', '_')}--{method}--seed{seed}"
    size = len(run_id.encode())
    if size > MAX_NAME_BYTES:
        raise ConfigError(
            f"the run directory of scenario {scenario[:40]!r}, method {method[:40]!r} would be "
            f"named with {size} bytes, more than the {MAX_NAME_BYTES} a file name may have: "
            "shorten the method name (or the scenario's path)"
        )
    return run_id


def expand(grid: GridConfig, results_dir: str | Path | None = None) -> list[RunSpec]:
    """Every (scenario, method, seed) with its config validated up front, so that a typo in
    one cell fails before any run starts."""
    root = Path(results_dir or grid.results_dir)
    specs = []
    # seeds outermost: runs start in this order, so a grid cut short still compares every
    # method on the first seeds
    for seed in grid.seeds:
        for scenario in grid.scenarios:
            for method in grid.methods:
                source = f"{scenario} / method {method} / seed {seed}"
                common, specific = _run_overrides(grid, method, seed)
                data = scenario_dict(scenario, common, specific, context=f"run {source}")
                try:
                    cfg = ExperimentConfig.model_validate(data)
                except ValidationError as err:
                    raise ConfigError(_format_validation_error(err, source)) from None
                run_id = grid_run_id(scenario, method, seed)
                specs.append(RunSpec(run_id, scenario, method, seed, cfg, root / "runs" / run_id))
    ids = [spec.run_id for spec in specs]
    clash = sorted({i for i in ids if ids.count(i) > 1})
    if clash:  # e.g. scenarios "a/b" and "a_b"
        raise ConfigError(f"two cells of the grid would share the run directory {clash[0]}")
    return specs
