"""Grids of runs: scenarios x methods x seeds, on Ray (local or a cluster) or sequentially.

An experiment file (YAML)::

    name: lbf-ablation
    results_dir: results/lbf-ablation
    scenarios: [lbf/15x15-4p-5f]
    methods:                       # name -> config overrides ("section.key": value)
      bdps: {algorithm.name: bdps}
      qmix: {algorithm.name: qmix}
    seeds: [0, 1, 2]
    total_steps: 200000
    overrides: {training.test_interval: 10000}   # for every run

``run_experiment`` trains every (scenario, method, seed) with :func:`bdps_agents.training.train`
into ``<results_dir>/runs/<run_id>/`` (TensorBoard events, ``metrics.csv``, ``checkpoint.pt``,
curve PNG) and merges the runs' CSVs into ``<results_dir>/results.csv``, a tidy table
``run_id, scenario, method, seed, env_step, metric, value`` with ``metric = "<scope>/<name>"``
(e.g. ``test/greedy_return``, ``test/win_rate``, ``update/delta_h``). Finished runs are skipped
when the experiment is started again; unfinished ones resume from their last checkpoint, and
finished ones train on when ``total_steps`` has grown (:func:`run_state`), so a budget can be
raised step by step. A results directory belongs to one experiment, one process at a time:
another experiment (another name, or fewer runs than it holds) and runs of another config are
refused.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bdps_agents.config import ConfigError
from bdps_agents.grid import GridConfig, RunSpec, expand, grid_run_id, load_grid
from bdps_agents.grid_budget import budget_line
from bdps_agents.run_rates import default_parallel_runs

RESULTS_HEADER = ["run_id", "scenario", "method", "seed", "env_step", "metric", "value"]


def is_finished(spec: RunSpec) -> bool:
    """A run is finished when its metrics.csv holds the final evaluation."""
    path = spec.logdir / "metrics.csv"
    if not path.is_file():
        return False
    with path.open(newline="") as f:
        return any(row and row[0] == "final" for row in csv.reader(f))


def run_state(spec: RunSpec) -> str:
    """``"new"`` (nothing trained yet), ``"partial"`` (a checkpoint to resume: a killed run, or a
    finished one whose budget the grid now raises: it trains on to it) or ``"finished"``.

    Raises ``ConfigError`` when the directory holds a run of another config (it would be resumed
    with the wrong settings, or mixed into the results), or one finished on a larger budget than
    asked: results are never replaced or mixed silently."""
    saved_path = spec.logdir / "config.json"
    if not saved_path.is_file():
        return "partial" if (spec.logdir / "checkpoint.pt").is_file() else "new"
    from bdps_agents.config import ExperimentConfig
    from bdps_agents.training.resume import config_differences

    try:
        saved = ExperimentConfig.model_validate(json.loads(saved_path.read_text()))
    except (ValueError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"{saved_path} is not a config this version can read ({first}): give the experiment "
            "another --results-dir, or move that run away"
        ) from None
    differ = config_differences(saved, spec.config)
    if differ:
        key, (old, new) = next(iter(differ.items()))
        more = f" (and {len(differ) - 1} more fields)" if len(differ) > 1 else ""
        raise ConfigError(
            f"{spec.logdir} holds a run with {key}={old!r}, the experiment now asks {new!r}"
            f"{more}: give the experiment another --results-dir (its runs are kept)"
        )
    if not is_finished(spec):
        return "partial" if (spec.logdir / "checkpoint.pt").is_file() else "new"
    done, asked = saved.training.total_steps, spec.config.training.total_steps
    if done > asked:
        raise ConfigError(
            f"{spec.run_id} finished with training.total_steps={done}, more than the {asked} "
            "asked now: compare at the smaller budget with `bdps plot RESULTS_DIR --max-step "
            f"{asked}`, or give the experiment another --results-dir"
        )
    return "partial" if done < asked else "finished"


def run_one(spec: RunSpec) -> dict[str, Any]:
    """Train one cell (resuming it when a checkpoint exists); returns a short summary. On an
    error, ``<logdir>/error.txt`` keeps its one-line description until the cell succeeds."""
    import torch

    from bdps_agents import training

    torch.set_num_threads(spec.config.training.torch_threads)
    start = time.time()
    error_file = spec.logdir / ERROR_FILE
    error_file.unlink(missing_ok=True)
    # the grid owns its run directories: a run killed before its first checkpoint starts over
    resume = (spec.logdir / "checkpoint.pt").is_file()
    try:
        result = training.train(spec.config, spec.logdir, resume=resume, overwrite=not resume)
    except Exception as err:
        spec.logdir.mkdir(parents=True, exist_ok=True)
        error_file.write_text(describe_error(err) + "\n")
        raise
    error_file.unlink(missing_ok=True)  # a note another process wrote meanwhile is stale now
    return {
        "run_id": spec.run_id,
        "final_greedy_return": result.final_greedy_return,
        **result.final_metrics,
        "env_steps": result.env_steps,
        "seconds": time.time() - start,
    }


ERROR_FILE = "error.txt"  # in a run's directory: why its last attempt failed


def describe_error(err: BaseException) -> str:
    """One line: the exception type and the first line of its message (Ray wraps a task's
    exception: its cause is described)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        err = cause
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


class GridRunError(RuntimeError):
    """Some runs of a grid failed; the others ran. The message lists them."""


def _report(done: int, total: int, summary: dict[str, Any], start: float) -> None:
    extra = "".join(
        f" {k}={v:.3f}" for k, v in summary.items() if k not in ("run_id", "env_steps", "seconds")
    )
    print(
        f"[{done}/{total}] {summary['run_id']}: {summary['env_steps']} steps in "
        f"{summary['seconds']:.0f} s,{extra} (elapsed {time.time() - start:.0f} s)",
        flush=True,
    )


def run_experiment(
    grid: GridConfig,
    *,
    results_dir: str | Path | None = None,
    local: bool = False,
    address: str | None = None,
    max_parallel: int | None = None,
) -> Path:
    """Run the grid and write ``results.csv``; returns the results directory.

    ``local=True`` trains the runs one after the other in this process. Otherwise each run is a
    Ray task: on a local Ray started here (``address=None``; as many parallel runs as CPUs /
    ``cpus_per_run``) or on an existing cluster (``address="auto"`` or ``"ray://host:port"``).
    """
    from bdps_agents.training.run_dir import run_dir_lock

    specs = expand(grid, results_dir)
    root = Path(results_dir or grid.results_dir)
    # one experiment at a time in a results directory (its runs' error notes would cross)
    with run_dir_lock(root, holder="bdps experiment", option="--results-dir"):
        return _run_locked(grid, specs, root, local, address, max_parallel)


def _run_locked(
    grid: GridConfig,
    specs: list[RunSpec],
    root: Path,
    local: bool,
    address: str | None,
    max_parallel: int | None,
) -> Path:
    # the directory and every existing run checked before anything is written or trained
    check_owner(grid, specs, root)
    states = {spec.run_id: run_state(spec) for spec in specs}
    for spec in specs:
        if states[spec.run_id] == "finished":  # an error note left by an attempt before
            (spec.logdir / ERROR_FILE).unlink(missing_ok=True)
    (root / "experiment.json").write_text(json.dumps(grid.model_dump(mode="json"), indent=2))
    todo = [s for s in specs if states[s.run_id] != "finished"]
    resumed = sum(state == "partial" for state in states.values())
    print(
        f"experiment {grid.name}: {len(specs)} runs ({len(specs) - len(todo)} already finished, "
        f"{resumed} to resume) -> {root}",
        flush=True,
    )
    parallel = 1 if local else max_parallel or default_parallel_runs(grid.cpus_per_run)
    print(budget_line(specs, todo, parallel), flush=True)
    start = time.time()
    if local:
        for i, spec in enumerate(todo, 1):
            try:
                summary = run_one(spec)
            except Exception as err:  # one cell's failure must not stop the grid
                _report_failure(i, len(todo), spec.run_id, err)
                continue
            _report(i, len(todo), summary, start)
    elif todo:
        _run_on_ray(todo, grid.cpus_per_run, address, max_parallel, start)
    path = write_results(specs, root)
    print(f"results: {path}", flush=True)
    failed = failed_runs(specs)
    if failed:
        listed = "; ".join(f"{run_id}: {error}" for run_id, error in failed.items())
        raise GridRunError(
            f"{len(failed)} of {len(specs)} runs failed ({root / FAILURES_NAME}): {listed}. "
            "The other runs are in the results; starting the experiment again retries the "
            "failed ones."
        )
    return root


def check_owner(grid: GridConfig, specs: list[RunSpec], root: Path) -> None:
    """A results directory belongs to one experiment: ``ConfigError`` when ``root`` holds
    another one (another name), or runs of this one that ``grid`` no longer has (fewer seeds,
    methods or scenarios): writing its record and ``results.csv`` would drop them from view."""
    recorded = read_record(root)
    if recorded is None:
        return
    where = f"give experiment {grid.name!r} another --results-dir (the runs in {root} are kept)"
    if recorded.name != grid.name:
        raise ConfigError(f"{root} holds the results of experiment {recorded.name!r}: {where}")
    ours = {spec.run_id for spec in specs}
    theirs = [
        grid_run_id(scenario, method, seed)
        for seed in recorded.seeds
        for scenario in recorded.scenarios
        for method in recorded.methods
    ]
    dropped = [run_id for run_id in theirs if run_id not in ours]
    if dropped:
        raise ConfigError(
            f"{root} holds {len(dropped)} runs of experiment {grid.name!r} that it no longer "
            f"has (e.g. {dropped[0]}): keep their seeds, methods and scenarios, or {where}"
        )


def _report_failure(done: int, total: int, run_id: str, err: BaseException) -> None:
    print(f"[{done}/{total}] {run_id}: FAILED: {describe_error(err)}", flush=True)


def failed_runs(specs: Iterable[RunSpec]) -> dict[str, str]:
    """``run_id -> error`` of the runs whose last attempt failed."""
    out = {}
    for spec in specs:
        error_file = spec.logdir / ERROR_FILE
        if error_file.is_file():
            out[spec.run_id] = error_file.read_text().strip()
    return out


def _run_on_ray(
    specs: list[RunSpec],
    cpus_per_run: float,
    address: str | None,
    max_parallel: int | None,
    start: float,
) -> None:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            'running experiments on Ray needs ray: pip install "bdps-agents[ray]" '
            "(or pass --local to run sequentially)"
        ) from exc
    started_here = not ray.is_initialized()
    if started_here:
        # tiny networks: one thread per run (the CPUs are the parallelism)
        runtime_env = {"env_vars": {"OMP_NUM_THREADS": "1"}}
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env=runtime_env,
        )
    try:
        task = ray.remote(num_cpus=cpus_per_run, max_retries=0)(run_one)
        pending: list[Any] = []
        queue, done, run_ids = list(specs), 0, {}
        limit = max_parallel or len(specs)
        while queue or pending:
            while queue and len(pending) < limit:
                spec = queue.pop(0)
                ref = task.remote(spec)
                run_ids[ref] = spec.run_id
                pending.append(ref)
            ready, pending = ray.wait(pending, num_returns=1)
            done += 1
            try:
                summary = ray.get(ready[0])
            except Exception as err:  # one run's failure must not stop the grid
                _report_failure(done, len(specs), run_ids[ready[0]], err)
                continue
            _report(done, len(specs), summary, start)
    finally:
        if started_here:
            ray.shutdown()


def write_results(specs: Iterable[RunSpec], root: Path) -> Path:
    """Merge the runs' ``metrics.csv`` into the tidy ``results.csv`` (written atomically)."""
    specs = list(specs)
    path = root / "results.csv"
    tmp = path.with_suffix(".csv.tmp")
    try:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(RESULTS_HEADER)
            for spec in specs:
                for scope, step, metric, value in _metric_rows(spec.logdir / "metrics.csv"):
                    row = [spec.run_id, spec.scenario, spec.method, spec.seed, step]
                    writer.writerow([*row, f"{scope}/{metric}", value])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # left only by a failure (e.g. a full disk)
    failures = root / FAILURES_NAME
    failed = failed_runs(specs)
    if failed:
        by_id = {spec.run_id: spec for spec in specs}
        tmp = failures.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["run_id", "scenario", "method", "seed", "error"])
            for run_id, error in failed.items():
                spec = by_id[run_id]
                writer.writerow([run_id, spec.scenario, spec.method, spec.seed, error])
        os.replace(tmp, failures)
    else:
        failures.unlink(missing_ok=True)
    return path


FAILURES_NAME = "failures.csv"  # beside results.csv: run_id, scenario, method, seed, error


def refresh_results(root: str | Path) -> Path | None:
    """Re-merge ``results.csv`` from the runs of the experiment in ``root`` (its
    ``experiment.json``), e.g. to plot one that is still running. None if ``root`` holds none."""
    root = Path(root)
    grid = read_record(root)
    return None if grid is None else write_results(expand(grid, root), root)


def read_record(root: Path) -> GridConfig | None:
    """The experiment recorded in ``root/experiment.json`` (None if there is none)."""
    meta = root / "experiment.json"
    if not meta.is_file():
        return None
    try:
        return GridConfig.model_validate(json.loads(meta.read_text()))
    except (ValueError, UnicodeDecodeError) as err:  # JSON or validation error
        first = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"{meta} is not a readable experiment record ({first}): move it away, or give the "
            "experiment another --results-dir"
        ) from None


def _metric_rows(path: Path) -> Iterable[tuple[str, str, str, str]]:
    if not path.is_file():
        return
    with path.open(newline="") as f:
        reader = csv.reader(f)
        next(reader, None)  # header
        for row in reader:
            if len(row) == 4:  # a torn last line of a killed run is skipped
                yield row[0], row[1], row[2], row[3]


def reproduce(
    name: str,
    *,
    results_dir: str | Path | None = None,
    local: bool = False,
    address: str | None = None,
    plot: Callable[[Path], Any] | None = None,
) -> Path:
    """Run a shipped experiment (e.g. ``lbf-ablation``) and draw its figures."""
    grid = load_grid(name)
    root = run_experiment(grid, results_dir=results_dir, local=local, address=address)
    if plot is not None:
        plot(root)
    return root
