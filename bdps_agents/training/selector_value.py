"""Selector value: what *choosing* roles, groups or clusters is worth.

The same networks play greedy episodes twice on the same env seeds: once with the assignments
the method's selectors choose, once with those replaced at every decision by random (or fixed)
ones (:class:`bdps_agents.algorithms.assignments.AssignmentOverride`). The selector value of a
level is the mean per-episode difference chosen − replaced, with a 95% Student-t interval over
the paired episodes; over several runs (seeds), :func:`bdps_agents.results.mean_ci` of the
per-run values gives the interval over seeds.

    bdps eval --checkpoint runs/x/checkpoint.pt --episodes 100 --roles random
    bdps eval --checkpoint runs/x/checkpoint.pt --episodes 100 --selector-value
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from tianshou.data import Batch
from tianshou.env import BaseVectorEnv

from bdps_agents.algorithms.assignments import (
    ASSIGNMENT_KEYS,
    AssignmentOverride,
    CounterfactualAssignments,
    distinct_per_env,
)
from bdps_agents.config import ConfigError
from bdps_agents.results import mean_ci
from bdps_agents.training.build import Run

# the replacement each level is valued against by default: the "random" per agent, and
# for BDPS's groups also the whole-team draw (the shape the paper's selector mostly makes)
DEFAULT_BASELINES: dict[str, tuple[str, ...]] = {
    "roles": ("random",),
    "groups": ("random", "random-team"),
    "clusters": ("random",),
}


@dataclass(frozen=True)
class Episodes:
    """Per-episode results, aligned with ``seeds``: team ``returns``, the env's episode
    metrics (e.g. ``win_rate``: SMAC's/SMAX's ``battle_won``) and, for policies that report
    roles or groups, their mean number per env over the episode's steps (``roles_per_env``,
    ``groups_per_env``) and the share of steps at which one holds every alive agent
    (``one_group_frac``, ``one_role_frac``)."""

    seeds: np.ndarray
    returns: np.ndarray
    metrics: dict[str, np.ndarray]
    assignments: dict[str, np.ndarray]

    def means(self) -> dict[str, float]:
        """Mean return, metrics and assignment diagnostics over the episodes."""
        out = {"return_mean": float(self.returns.mean()), "return_std": float(self.returns.std())}
        out.update({key: float(np.mean(v)) for key, v in self.metrics.items()})
        out.update({key: float(np.mean(v)) for key, v in self.assignments.items()})
        return out


def paired_episodes(
    policy: Any,
    venv: BaseVectorEnv,
    seeds: Sequence[int],
    metric_keys: Sequence[str] = (),
    metric_names: Mapping[str, str] | None = None,
) -> Episodes:
    """One episode of ``policy`` (as it acts outside training: greedy) per seed on the vector
    env of JointEnvs ``venv``: env i of each round of ``env_num`` seeds is reset with its seed,
    plays one episode and waits. So two calls with the same seeds start every episode from the
    same state, whatever the policies did (a Collector's episodes follow each env's random
    stream, which a different episode length shifts). ``metric_keys``: info keys whose final
    value is an episode metric, reported under ``metric_names`` (e.g. ``battle_won`` ->
    ``win_rate``)."""
    keys, names = tuple(metric_keys), dict(metric_names or {})
    seeds_arr = np.asarray(list(seeds), dtype=np.int64)
    returns = np.zeros(len(seeds_arr))
    metrics = {names.get(key, key): np.full(len(seeds_arr), np.nan) for key in keys}
    distinct: dict[str, np.ndarray] = {}  # per episode: summed distinct count, steps at 1
    steps = np.zeros(len(seeds_arr))
    for start in range(0, len(seeds_arr), venv.env_num):
        chunk = seeds_arr[start : start + venv.env_num]
        # one reset per env: a vector env hands the same keywords to every env it resets
        first: list[Any] = [venv.reset(env_id=[i], seed=int(s))[0] for i, s in enumerate(chunk)]
        obs: Any = Batch.cat(first)
        ready = np.arange(len(chunk))
        state = None
        while len(ready):
            out = policy(Batch(obs=obs, info=Batch()), state)
            rows = start + ready
            steps[rows] += 1
            for key in ASSIGNMENT_KEYS:
                if key in out.get("policy", Batch()).get_keys():
                    count = distinct_per_env(out.policy[key], np.asarray(obs.alive))
                    sums = distinct.setdefault(key, np.zeros((2, len(seeds_arr))))
                    sums[0, rows] += count
                    sums[1, rows] += count == 1
            obs_next, rew, terminated, truncated, info = venv.step(out.act, ready)
            returns[rows] += np.asarray(rew, dtype=float).reshape(len(ready), -1).sum(-1)
            done = np.logical_or(terminated, truncated)
            for j in np.flatnonzero(done):
                for key in keys:
                    metrics[names.get(key, key)][start + ready[j]] = float(info[j][key])
            keep = ~done
            ready, obs, state = ready[keep], obs_next[keep], out.state[keep]
    assignments: dict[str, np.ndarray] = {}
    for key, (total, single) in distinct.items():
        assignments[ASSIGNMENT_KEYS[key]] = total / steps
        assignments[f"one_{key}_frac"] = single / steps
    return Episodes(seeds_arr, returns, metrics, assignments)


@contextmanager
def overridden(policy: object, overrides: dict[str, str], seed: int) -> Iterator[None]:
    """``policy``'s choices replaced per level (``{"roles": "random"}``) inside the block."""
    if not overrides:
        yield
        return
    if not isinstance(policy, CounterfactualAssignments):
        raise ValueError(
            f"{type(policy).__name__} chooses no shared networks per agent: --roles/--groups "
            "apply to role-based methods (bdps, rode, seps)"
        )
    try:
        for level, text in overrides.items():
            policy.set_override(level, text, seed)
        yield
    finally:
        for level in overrides:
            policy.set_override(level, "chosen", seed)


@dataclass(frozen=True)
class PairedValue:
    """chosen − replaced per episode: mean and 95% interval over the paired episodes."""

    level: str
    baseline: str
    metric: str
    mean: float
    low: float
    high: float
    episodes: int

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "level": self.level,
            "baseline": self.baseline,
            "metric": self.metric,
            "value": self.mean,
            "ci_low": self.low,
            "ci_high": self.high,
            "episodes": self.episodes,
        }


def paired_value(
    chosen: Episodes, replaced: Episodes, level: str, baseline: str
) -> list[PairedValue]:
    """The selector value of ``level`` against ``baseline`` for the return and each metric."""
    if not np.array_equal(chosen.seeds, replaced.seeds):
        raise ValueError("paired episodes must be played on the same env seeds")
    columns = {"return": (chosen.returns, replaced.returns)}
    columns.update({key: (chosen.metrics[key], replaced.metrics[key]) for key in chosen.metrics})
    values = []
    for metric, (a, b) in columns.items():
        mean, low, high = mean_ci(a - b)
        values.append(
            PairedValue(level, baseline, metric, float(mean), float(low), float(high), len(a))
        )
    return values


def selector_value(
    run: Run,
    episodes: int,
    seed: int,
    baselines: dict[str, Sequence[str]] | None = None,
    fixed: bool = False,
) -> tuple[Episodes, list[PairedValue]]:
    """Greedy episodes as chosen on seeds ``seed .. seed + episodes − 1``, then with each
    level's choices replaced by each of its ``baselines`` (default: :data:`DEFAULT_BASELINES`
    for the levels the policy offers; ``fixed``: also ``fixed:i`` for every choice i, which
    tells a selector that routes by the situation from one that always picks one network) on
    the same seeds: the chosen episodes and the paired values."""
    policy = run.policy
    levels = offered_levels(policy)
    if not levels:
        raise ConfigError(
            f"{type(policy).__name__} chooses no shared networks per agent: the selector value "
            "applies to role-based methods (bdps, rode, seps)"
        )
    if baselines is None:
        baselines = {level: DEFAULT_BASELINES[level] for level in levels}
        if getattr(policy, "group_choice", None) == "partition":  # the shape it chooses
            baselines["groups"] = (*baselines["groups"], "random-partition")
        if fixed:
            sizes = cast(CounterfactualAssignments, policy).override_sizes()
            for level, offered in levels.items():
                if "fixed" in offered:
                    each = tuple(f"fixed:{i}" for i in range(sizes[level]))
                    baselines[level] = (*baselines[level], *each)
    seeds = range(seed, seed + episodes)

    def play() -> Episodes:
        metrics = run.test_metrics
        return paired_episodes(policy, run.test_envs, seeds, metrics.keys, metrics.names)

    chosen = play()
    values: list[PairedValue] = []
    for level, modes in baselines.items():
        for mode in modes:
            with overridden(policy, {level: mode}, seed):
                replaced = play()
            values.extend(paired_value(chosen, replaced, level, str(mode)))
    return chosen, values


def offered_levels(policy: object) -> dict[str, tuple[str, ...]]:
    """The assignment levels ``policy`` has and the modes each offers (none for a policy
    without chosen networks): ``CounterfactualAssignments.override_levels``."""
    levels = getattr(policy, "override_levels", None)
    return levels() if callable(levels) else {}


def parse_overrides(policy: object, roles: str, groups: str) -> dict[str, str]:
    """The CLI's ``--roles``/``--groups`` as overrides the policy offers (checked here, so a
    bad value is one line before any episode runs). RODE's roles and SePS's clusters answer to
    ``--roles``."""
    levels = offered_levels(policy)
    asked = {"roles": roles, "groups": groups}
    out: dict[str, str] = {}
    for option, text in asked.items():
        if text == "chosen":
            continue
        level = option if option in levels else ("clusters" if option == "roles" else option)
        if level not in levels:
            raise ConfigError(
                f"--{option} {text}: {type(policy).__name__} has no {option} to replace "
                f"(it has: {', '.join(levels) or 'no assignment levels'})"
            )
        sizes = policy.override_sizes()  # type: ignore[attr-defined]
        try:
            AssignmentOverride.parse(text, level=option, size=sizes[level], modes=levels[level])
        except ValueError as err:
            raise ConfigError(str(err)) from None
        out[level] = text
    return out


# fresh env seeds for evaluation episodes (training envs are seeded from training.seed, test
# envs from training.seed + 10,000)
EVAL_SEED_BASE = 1_000_000


def evaluate_assignments(
    checkpoint: str, episodes: int, roles: str = "chosen", groups: str = "chosen", seed: int = 0
) -> dict[str, float | str]:
    """``bdps eval --roles/--groups``: greedy episodes on env seeds ``EVAL_SEED_BASE + seed``
    onwards with the given overrides (the same seeds as any other call with this ``seed``)."""
    from bdps_agents.training.evaluation import checkpoint_run

    with checkpoint_run(checkpoint) as run:
        overrides = parse_overrides(run.policy, roles, groups)
        seeds = range(EVAL_SEED_BASE + seed, EVAL_SEED_BASE + seed + episodes)
        with overridden(run.policy, overrides, seed):
            metrics = run.test_metrics
            result = paired_episodes(run.policy, run.test_envs, seeds, metrics.keys, metrics.names)
    return {"episodes": episodes, "roles": roles, "groups": groups, **result.means()}


def evaluate_selector_value(checkpoint: str, episodes: int, seed: int = 0) -> dict[str, object]:
    """``bdps eval --selector-value``: the chosen episodes' means and every default paired
    value (:func:`selector_value`) as one JSON-ready dict."""
    from bdps_agents.training.evaluation import checkpoint_run

    with checkpoint_run(checkpoint) as run:
        chosen, values = selector_value(run, episodes, EVAL_SEED_BASE + seed, fixed=True)
    return {
        "episodes": episodes,
        **chosen.means(),
        "selector_value": [value.as_dict() for value in values],
    }


def selector_value_metrics(run: Run, episodes: int, seed: int) -> dict[str, float]:
    """The return's selector values as metrics (``role_value``, ``group_value``,
    ``group_value_random_team``, ... with ``_ci`` = the 95% half-width), for a run's tests;
    {} for a policy that chooses no networks per agent."""
    if episodes < 1 or not offered_levels(run.policy):
        return {}
    _, values = selector_value(run, episodes, EVAL_SEED_BASE + seed)
    out: dict[str, float] = {}
    for value in values:
        if value.metric != "return":
            continue
        name = f"{value.level.removesuffix('s')}_value"
        if value.baseline != "random":
            name += "_" + value.baseline.replace("-", "_")
        out[name] = value.mean
        out[f"{name}_ci"] = (value.high - value.low) / 2
    return out
