"""Choosing shared networks: the partition group choice, persistent roles, counterfactual
assignments and the selector value (planted cases that can fail)."""

from __future__ import annotations

import itertools
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from pettingzoo import ParallelEnv

from bdps_agents.algorithms.assignments import (
    AssignmentOverride,
    distinct_per_env,
    partition_argmax,
    random_partition,
)
from bdps_agents.algorithms.decisions import assignment_stats
from bdps_agents.joint_env import JointEnv
from bdps_agents.training.selector_value import (
    overridden,
    paired_episodes,
    paired_value,
)
from bdps_agents.vector_envs import StackedDummyVectorEnv
from tests.algorithms.synthetic import synthetic_algorithm


# ----------------------------------------------------------------------------- partition
def best_partition_value(q: np.ndarray, alive: np.ndarray) -> float:
    """Brute force: the best Σ q[i, g_i] over alive agents with every group held (or any
    assignment when fewer than m are alive)."""
    _n, m = q.shape
    agents = np.flatnonzero(alive)
    best = -np.inf
    for groups in itertools.product(range(m), repeat=len(agents)):
        if len(agents) >= m and len(set(groups)) < m:
            continue
        best = max(best, float(sum(q[i, g] for i, g in zip(agents, groups, strict=True))))
    return best


def test_partition_argmax_finds_the_best_assignment_with_every_group_held():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, m = int(rng.integers(2, 6)), int(rng.integers(2, 4))
        q = rng.normal(size=(n, m))
        q[:, 0] += rng.uniform(0, 3)  # often one group wins for everybody: the constraint binds
        alive = rng.random(n) < 0.8
        got = partition_argmax(torch.as_tensor(q)[None], torch.as_tensor(alive)[None])[0].numpy()
        value = float(q[np.flatnonzero(alive), got[alive]].sum())
        assert value == pytest.approx(best_partition_value(q, alive))
        if alive.sum() >= m:
            assert set(got[alive].tolist()) == set(range(m))


def test_partition_argmax_is_the_argmax_when_that_covers_every_group():
    q = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]])
    alive = torch.ones(1, 3, dtype=torch.bool)
    assert partition_argmax(q, alive).tolist() == [[0, 1, 0]]
    # everybody prefers group 0: the agent that loses least by moving takes group 1
    q = torch.tensor([[[1.0, 0.9], [2.0, 0.0], [3.0, 0.0]]])
    assert partition_argmax(q, alive).tolist() == [[1, 0, 0]]


def test_random_partitions_leave_no_group_empty():
    rng = np.random.default_rng(1)
    alive = rng.random((500, 5)) < 0.7
    groups = random_partition(alive, 3, rng)
    for row, live in zip(groups, alive, strict=True):
        if live.sum() >= 3:
            assert set(row[live].tolist()) == {0, 1, 2}
    assert distinct_per_env(groups, alive)[alive.sum(1) >= 3].min() == 3


@pytest.mark.parametrize(
    ("text", "level", "message"),
    [
        ("bogus", "roles", "expected one of chosen, random"),
        ("fixed", "roles", "expected one of"),
        ("fixed:2", "roles", "N must be in 0..1"),
        ("fixed:x", "groups", "must be an integer"),
        ("random-partition", "roles", "expected one of"),
    ],
)
def test_a_bad_override_is_refused_naming_what_is_accepted(text, level, message):
    modes = ("chosen", "random", "random-team", "fixed")
    if level == "groups":
        modes = (*modes, "random-partition")
    with pytest.raises(ValueError, match=message):
        AssignmentOverride.parse(text, level=level, size=2, modes=modes)
    assert AssignmentOverride.parse("fixed:1", level=level, size=2, modes=modes).fixed == 1


# ----------------------------------------------------------------------------- persistence
def bdps_policy(**bdps: Any) -> Any:
    config = {"algorithm": {"name": "bdps"}, "bdps": {"role_interval": 3, **bdps}}
    return synthetic_algorithm(config, n_agents=4, obs_dim=3, n_actions=3).policy


def switch_rates(margin: float, z: torch.Tensor) -> tuple[float, float]:
    policy = bdps_policy(n_roles=3, role_switch_margin=margin)
    role = z[0].argmax(-1)
    roles = [role]
    for z_j in z[1:]:
        role = policy.persistent_roles(z_j, role)
        roles.append(role)
    assign = torch.stack(roles, 1)  # (agents, J)
    stats = assignment_stats(
        "role", assign[:, :, None], torch.ones_like(assign, dtype=torch.bool)[:, :, None], 3
    )
    return stats["role_switch_rate"], stats["role_switch_rate_indep"]


def test_persistent_roles_switch_less_than_independent_draws_on_planted_windows():
    # planted: each agent has a true role (latent + 2 on it) under unit noise at every decision
    g = torch.Generator().manual_seed(0)
    true_role = torch.randint(0, 3, (400,), generator=g)
    z = torch.randn(30, 400, 3, generator=g) + 2.0 * torch.nn.functional.one_hot(true_role, 3)
    plain, _plain_indep = switch_rates(0.0, z)
    sticky, sticky_indep = switch_rates(1.5, z)
    assert plain > 0.2  # argmax z flips with the noise
    assert sticky < 0.5 * plain and sticky < 0.5 * sticky_indep
    # ... and keeps the true roles: the share held by each agent's true role does not fall
    policy = bdps_policy(n_roles=3, role_switch_margin=1.5)
    role = z[0].argmax(-1)
    for z_j in z[1:]:
        role = policy.persistent_roles(z_j, role)
    assert (role == true_role).float().mean() > 0.8


def test_margin_zero_is_the_papers_argmax():
    policy = bdps_policy(n_roles=3)
    z = torch.randn(50, 4, 3)
    current = torch.randint(0, 3, (50, 4))
    assert torch.equal(policy.persistent_roles(z, current), z.argmax(-1))


# ----------------------------------------------------------------------------- selector value
class MatchEnv(ParallelEnv):
    """Planted: agent i is paid 1 per step for action i (3 actions, 2 agents, 8 steps); the
    observations are seeded noise, so that episodes depend on the reset seed."""

    metadata: dict[str, Any] = {"name": "match"}  # noqa: RUF012
    possible_agents = ["agent_0", "agent_1"]  # noqa: RUF012

    def __init__(self) -> None:
        self.agents: list[str] = []
        self.rng = np.random.default_rng()
        self.t = 0

    def observation_space(self, agent: str) -> gym.spaces.Box:
        return gym.spaces.Box(-10, 10, (3,), np.float32)

    def action_space(self, agent: str) -> gym.spaces.Discrete:
        return gym.spaces.Discrete(3)

    def _obs(self) -> dict[str, np.ndarray]:
        return {a: self.rng.normal(size=3).astype(np.float32) for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> Any:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents, self.t = list(self.possible_agents), 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, int]) -> Any:
        self.t += 1
        rew = {a: float(actions[a] == i) for i, a in enumerate(self.possible_agents)}
        over = self.t >= 8
        out = (
            self._obs(),
            rew,
            dict.fromkeys(self.agents, False),
            dict.fromkeys(self.agents, over),
        )
        infos = {a: {} for a in self.agents}
        if over:
            self.agents = []
        return (*out, infos)


def planted_bdps(specialists: bool) -> Any:
    """Single-level BDPS on MatchEnv whose roles never change from i mod k (agent i in role
    i) and whose role network r plays action r (``specialists``) or action 0 (identical)."""
    config = {
        "algorithm": {"name": "bdps"},
        "bdps": {"levels": 1, "n_roles": 2, "role_interval": 3, "role_switch_margin": 1e9},
    }
    policy = synthetic_algorithm(config, n_agents=2, obs_dim=3, n_actions=3).policy
    with torch.no_grad():
        out = policy.agent.fc_out
        out.weight.zero_()
        out.bias.zero_()
        for role in range(2):
            out.bias[role, role if specialists else 0] = 1.0
    policy.eval()
    return policy


def match_envs(n: int = 4) -> StackedDummyVectorEnv:
    return StackedDummyVectorEnv([lambda: JointEnv(MatchEnv(), episode_limit=8)] * n)


def test_episodes_on_the_same_seeds_are_paired():
    policy, venv = planted_bdps(specialists=True), match_envs()
    a = paired_episodes(policy, venv, range(10))
    b = paired_episodes(policy, venv, range(10))
    assert np.array_equal(a.returns, b.returns) and a.returns.mean() == pytest.approx(16.0)
    assert a.assignments["roles_per_env"].min() == 2.0


def random_role_value(policy: Any, venv: StackedDummyVectorEnv) -> Any:
    """chosen − random roles of the return on 40 paired episodes."""
    seeds = range(40)
    chosen = paired_episodes(policy, venv, seeds)
    with overridden(policy, {"roles": "random"}, seed=0):
        random = paired_episodes(policy, venv, seeds)
    return paired_value(chosen, random, "roles", "random")[0]


def test_specialist_role_networks_on_a_known_split_have_a_large_selector_value():
    policy, venv = planted_bdps(specialists=True), match_envs()
    value = random_role_value(policy, venv)
    assert value.metric == "return" and value.low > 4.0  # half the agent-steps go wrong
    with overridden(policy, {"roles": "fixed:0"}, seed=0):
        fixed = paired_episodes(policy, venv, range(40))
    assert fixed.returns.mean() == pytest.approx(8.0)  # only agent 0 is paid
    assert fixed.assignments["one_role_frac"].min() == 1.0


def test_identical_role_networks_have_no_selector_value():
    value = random_role_value(planted_bdps(specialists=False), match_envs())
    assert value.mean == 0.0 and value.low == 0.0 == value.high


def test_a_policy_without_assignments_cannot_be_overridden():
    policy = synthetic_algorithm({"algorithm": {"name": "qmix"}}, 2, 3, 3).policy
    with (
        pytest.raises(ValueError, match="role-based methods"),
        overridden(policy, {"roles": "random"}, 0),
    ):
        pass


# ----------------------------------------------------------------------------- every method
ASSIGNMENT_OUT = {
    "roles": lambda out: out.policy.role,
    "groups": lambda out: out.policy.group,
    "clusters": lambda out: out.state.cluster,
}


def test_every_role_based_method_lets_its_choices_be_replaced(algorithm_variant, small_lbf_config):
    from tianshou.data import Batch

    from bdps_agents.training.build import build_run

    run = build_run(small_lbf_config(algorithm_variant))
    try:
        policy = run.policy
        levels = getattr(policy, "OVERRIDE_LEVELS", {})
        if not levels:
            pytest.skip(f"{algorithm_variant['algorithm.name']} chooses no networks per agent")
        obs = run.test_envs.reset()[0]
        for level, size in policy.override_sizes().items():
            last = size - 1
            with overridden(policy, {level: f"fixed:{last}"}, seed=0):
                out = policy(Batch(obs=obs, info=Batch()), None)  # t = 0: a decision
            assert (np.asarray(ASSIGNMENT_OUT[level](out)) == last).all(), level
            with overridden(policy, {level: "random"}, seed=0):
                drawn = [
                    np.asarray(ASSIGNMENT_OUT[level](policy(Batch(obs=obs, info=Batch()), None)))
                    for _ in range(20)
                ]
            assert len(np.unique(drawn)) == size, level  # every choice comes up
            assert policy.override_for(level) is None  # restored after the block
    finally:
        run.close()


def test_the_selector_value_covers_exactly_the_levels_a_variant_has(
    algorithm_variant, small_lbf_config
):
    """Single-level BDPS has roles but no groups: its selector value (every replacement, fixed
    ones included) is measured for roles alone; ``bdps selector-value`` failed on it with a
    KeyError for the groups it lacks."""
    from bdps_agents.training.build import build_run
    from bdps_agents.training.selector_value import offered_levels, selector_value

    run = build_run(small_lbf_config(algorithm_variant))
    try:
        levels = offered_levels(run.policy)
        if not levels:
            pytest.skip(f"{algorithm_variant['algorithm.name']} chooses no networks per agent")
        assert set(levels) == set(run.policy.override_sizes())
        if algorithm_variant.get("bdps.levels") == 1:
            assert set(levels) == {"roles"}
            with pytest.raises(ValueError, match="has no assignment level 'groups'"):
                run.policy.set_override("groups", "random")
        _, values = selector_value(run, episodes=2, seed=0, fixed=True)
        assert {v.level for v in values} == set(levels)
        sizes = run.policy.override_sizes()
        for level in levels:
            fixed = {
                v.baseline for v in values if v.level == level and v.baseline.startswith("fixed:")
            }
            assert fixed == {f"fixed:{i}" for i in range(sizes[level])}, level
    finally:
        run.close()


def test_a_run_logs_greedy_assignments_and_the_selector_value_at_each_test(
    small_lbf_config, tmp_path
):
    from bdps_agents.training import train

    cfg = small_lbf_config(
        {
            "algorithm.name": "bdps",
            "training.total_steps": 400,
            "training.test_interval": 200,
            "training.selector_value_episodes": 4,
        }
    )
    logdir = tmp_path / "runs" / "lbf_6x6-2p-1f--bdps--seed0"  # a results dir's run
    train(cfg, logdir=logdir)
    rows = [line.split(",") for line in (logdir / "metrics.csv").read_text().splitlines()]
    tests = {(scope, name) for scope, _, name, _ in rows[1:]} if rows else set()
    for name in ("roles_per_env", "groups_per_env", "role_value", "role_value_ci",
                 "group_value", "group_value_random_team"):  # fmt: skip
        assert ("test", name) in tests and ("final", name) in tests, name
    per_env = [float(v) for scope, _, name, v in rows[1:] if name == "groups_per_env"]
    assert all(1.0 <= v <= 2.0 for v in per_env)

    # bdps selector-value on the results dir: one row per quantity; a second report reads the
    # run's values back (an unfinished run, without a final row, is left out)
    from bdps_agents.config import ResultsError
    from bdps_agents.training.selector_report import selector_report

    path, table = selector_report(tmp_path, episodes=3)
    report = path.read_text().splitlines()
    assert report[0].startswith("scenario,method,seed,episodes,quantity")
    quantities = {line.split(",")[4] for line in report[1:]}
    assert {"return", "groups_per_env", "role_value:random:return"} <= quantities
    assert "| bdps | role_value:random:return |" in table
    cached = logdir / "selector_value.csv"
    stamp = cached.stat().st_mtime_ns
    assert selector_report(tmp_path, episodes=3)[1] == table
    assert cached.stat().st_mtime_ns == stamp  # read back, not played again
    selector_report(tmp_path, episodes=3, overwrite=True)
    assert cached.stat().st_mtime_ns != stamp
    unfinished = tmp_path / "runs" / "lbf_6x6-2p-1f--bdps--seed1"
    unfinished.mkdir()
    for name in ("checkpoint.pt", "config.json"):
        (unfinished / name).write_bytes((logdir / name).read_bytes())
    (unfinished / "metrics.csv").write_text("scope,env_step,metric,value\n")
    assert len(selector_report(tmp_path, episodes=3)[0].read_text().splitlines()) == len(report)
    assert not (unfinished / "selector_value.csv").exists()
    with pytest.raises(ResultsError, match="no finished runs"):
        selector_report(tmp_path / "runs", episodes=3)
