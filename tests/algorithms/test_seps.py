"""SePS's mechanism: the VAE + k-means finds a planted grouping of agents and reports none where
there is none; the assignment is fixed once (network 0 for all before, copies of network 0
after); the learner process hands the child's assignment to the acting policy."""

from __future__ import annotations

import csv
import functools

import pytest
import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step, torch_train_mode
from tianshou.data import Collector

from bdps_agents import learner_process
from bdps_agents.algorithms import build_algorithm
from bdps_agents.algorithms.clustering import davies_bouldin
from bdps_agents.algorithms.seps.clustering import cluster_agents
from bdps_agents.config import ConfigError, build_config
from bdps_agents.env_spec import EnvSpec
from bdps_agents.learner_process import LearnerProcess
from bdps_agents.replay import EpisodeReplayBuffer
from bdps_agents.training import load_checkpoint, make_joint, make_vector_env, train
from tests.algorithms.synthetic import synthetic_algorithm

OBS, ACTIONS = 3, 3


# ------------------------------------------------------------------ planted transitions
def _learner(n_agents: int, **seps):
    """A SePS learner for a synthetic env of ``n_agents`` (no env needed: only sizes)."""
    cfg_data = {"algorithm": {"name": "seps"}, "network": {"hidden_dim": 8}, "seps": seps}
    return synthetic_algorithm(cfg_data, n_agents, OBS, ACTIONS)


def _episodes(flipped: list[bool], generator: torch.Generator, B: int = 16, T: int = 4) -> dict:
    """Episode tensors as the learner replays them: o(t+1) = o(t) + 1 for most agents, −o(t)
    for the ``flipped`` ones; random actions, zero team reward; the last step of every other
    episode is padding (not valid) and holds garbage the VAE must not see."""
    n = len(flipped)
    obs = torch.empty(B, T + 1, n, OBS)
    obs[:, 0] = torch.randn(B, n, OBS, generator=generator)
    flip = torch.tensor(flipped)[None, :, None]
    for t in range(T):
        obs[:, t + 1] = torch.where(flip, -obs[:, t], obs[:, t] + 1)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[::2, -1] = False
    obs[::2, -1] = 100.0
    return {
        "obs": obs,
        "act": torch.randint(ACTIONS, (B, T, n), generator=generator),
        "rew": torch.zeros(B, T),
        "valid": valid,
    }


def _pretrain(algorithm, flipped: list[bool], steps: int = 800, seed: int = 0) -> None:
    """Train the VAE alone through the learner's own tuple extraction (``vae_loss``)."""
    generator = torch.Generator().manual_seed(seed)
    vae = algorithm.policy.vae
    optim = torch.optim.Adam(vae.parameters(), lr=2e-3)
    for _ in range(steps):
        loss, _ = algorithm.vae_loss(_episodes(flipped, generator))
        optim.zero_grad()
        loss.backward()
        optim.step()


@functools.cache
def _trained(flipped: tuple[bool, ...], n_clusters: int | None = None):
    """A learner whose VAE was pre-trained on the planted transitions, then clustered."""
    torch.manual_seed(0)
    algorithm = _learner(len(flipped), n_clusters=n_clusters)
    _pretrain(algorithm, list(flipped))
    algorithm.cluster()
    return algorithm


def _groups(labels) -> set[frozenset[int]]:
    labels = list(labels)
    return {frozenset(i for i, g in enumerate(labels) if g == c) for c in set(labels)}


def test_a_planted_grouping_is_found_with_a_given_k():
    algorithm = _trained((False, False, True, True), n_clusters=2)
    assert _groups(algorithm.policy.assignment.tolist()) == {frozenset({0, 1}), frozenset({2, 3})}


def test_the_davies_bouldin_choice_finds_the_planted_k():
    # 3 + 3 agents: k = 2..5 tried, k = 2 wins
    algorithm = _trained((False, True, False, True, True, False))
    assert algorithm.policy.n_networks == 5  # n - 1 networks allocated for the choice
    assignment = algorithm.policy.assignment.tolist()
    assert _groups(assignment) == {frozenset({0, 2, 5}), frozenset({1, 3, 4})}
    assert float(algorithm.policy.clusters.score) < 0.1  # well separated


def test_no_structure_is_reported_as_such():
    # every agent moves alike: the latent means lie within the posterior noise of each other,
    # and whatever k-means makes of them scores a high Davies-Bouldin index
    planted = _trained((False, False, True, True), n_clusters=2)
    alike = _trained((False, False, False, False), n_clusters=2)
    assert planted.policy.vae.separation() > 5.0
    assert alike.policy.vae.separation() < 2.0
    mu_planted, _ = planted.policy.vae.encode()
    mu_alike, _ = alike.policy.vae.encode()
    planted_db = davies_bouldin(mu_planted, planted.policy.assignment)
    alike_db = davies_bouldin(mu_alike, alike.policy.assignment)
    assert planted_db < 0.1 < 0.2 < alike_db


def test_davies_bouldin_prefers_splitting_pairs_into_singletons():
    # why the 2 + 2 case above gives k: with clusters P, Q of spreads s_P, s_Q at distance D,
    # DB(k=2) = (s_P + s_Q) / D, while splitting Q into two singletons gives s_P / D: smaller
    mu = torch.tensor([[0.0, 0.0], [0.0, 0.2], [10.0, 0.0], [10.0, 0.3]])
    chosen = cluster_agents(mu, None, 3, torch.Generator().manual_seed(0))
    assert chosen.k == 3
    assert all(group <= {0, 1} or group <= {2, 3} for group in _groups(chosen.labels.tolist()))
    forced = cluster_agents(mu, 2, 3, torch.Generator().manual_seed(0))
    assert _groups(forced.labels.tolist()) == {frozenset({0, 1}), frozenset({2, 3})}
    assert forced.score > chosen.score


def test_k_means_is_deterministic_per_generator_seed():
    mu = torch.randn(8, 10, generator=torch.Generator().manual_seed(1))
    runs = [cluster_agents(mu, None, 7, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(runs[0].labels, runs[1].labels) and runs[0].score == runs[1].score
    assert runs[0].labels[0] == 0  # numbered by first member


def test_two_agents_without_a_k_share_one_network():
    algorithm = _learner(2)
    assert algorithm.policy.n_networks == 1
    algorithm.cluster()
    assert algorithm.policy.assignment.tolist() == [0, 0] and algorithm.policy.clustered


def test_more_clusters_than_agents_is_refused_in_one_line():
    cfg = build_config(
        {
            "algorithm": {"name": "seps"},
            "env": {"adapter": "lbf", "kwargs": {"task": "6x6-2p-1f"}},
            "seps": {"n_clusters": 3},
        }
    )
    with pytest.raises(ConfigError, match=r"seps.n_clusters \(k=3\) exceeds .* \(n=2\)"):
        cfg.check_env(2, 50)


# ------------------------------------------------------------------ on LBF, through the update
def _lbf(small_lbf_config, **overrides):
    # 4 agents; 2 pre-training updates (50 env steps per update)
    base = {
        "algorithm.name": "seps",
        "env.kwargs": {"task": "6x6-4p-1f"},
        "seps.pretrain_steps": 100,
    }
    return small_lbf_config({**base, **overrides})


def _batches(algorithm, cfg, n: int):
    spec = EnvSpec.of(make_joint(cfg.env))
    venv = make_vector_env(cfg.env, 2, seed=0)
    buffer = EpisodeReplayBuffer(50 * 50, 2, seed=0)
    with policy_within_training_step(algorithm.policy):
        algorithm.policy.set_eps_training(1.0)
        Collector(algorithm.policy, venv, buffer).collect(n_episode=8, reset_before_collect=True)
    venv.close()
    out = []
    for _ in range(n):
        batch, indices = buffer.sample(4)
        out.append(algorithm._preprocess_batch(batch, buffer, indices))
    return spec, out


def _update(algorithm, batch):
    with torch_train_mode(algorithm):
        return algorithm._update_with_batch(batch)


def test_pretraining_shares_network_0_then_clusters_once_from_its_copies(small_lbf_config):
    cfg = _lbf(small_lbf_config)
    torch.manual_seed(0)
    algorithm = build_algorithm(cfg, EnvSpec.of(make_joint(cfg.env)))
    _, batches = _batches(algorithm, cfg, 8)
    agent, policy = algorithm.policy.agent, algorithm.policy
    assert algorithm.pretrain_updates == 2 and policy.n_networks == 3
    initial = [p.detach().clone() for p in agent.parameters()]
    for batch in batches[:2]:
        stats = _update(algorithm, batch)
        assert stats.vae_loss is not None and stats.seps_clustered == 0.0 and stats.seps_k == 1
    assert not policy.clustered and policy.assignment.tolist() == [0, 0, 0, 0]
    for before, after in zip(initial, agent.parameters(), strict=True):
        assert not torch.equal(before[0], after[0])  # network 0 learns
        assert torch.equal(before[1:], after[1:])  # the others are not used
    vae_before = [p.detach().clone() for p in policy.vae.parameters()]
    calls = []
    cluster = algorithm.cluster

    def counted():
        calls.append(algorithm.num_updates)
        shared = [p.detach().clone() for p in agent.parameters()]
        cluster()
        # every network (online, target, Adam moments) starts as network 0
        for p, was in zip(agent.parameters(), shared, strict=True):
            assert torch.equal(p, was[:1].expand_as(p))
        for p in algorithm.target_agent.parameters():
            assert torch.equal(p, p[:1].expand_as(p))
        for p in agent.parameters():
            state = algorithm.optim._optim.state[p]
            assert torch.equal(state["exp_avg"], state["exp_avg"][:1].expand_as(p))

    algorithm.cluster = counted
    stats = _update(algorithm, batches[2])
    assert calls == [2] and policy.clustered
    assignment = policy.assignment.clone()
    assert stats.vae_loss is None and stats.seps_clustered == 1.0
    assert stats.seps_k == len(set(assignment.tolist())) >= 2
    assert stats.clusters == {f"agent_{i}": float(g) for i, g in enumerate(assignment.tolist())}
    for batch in batches[3:]:
        _update(algorithm, batch)
    assert calls == [2]  # once
    assert torch.equal(policy.assignment, assignment)
    for before, after in zip(vae_before, policy.vae.parameters(), strict=True):
        assert torch.equal(before, after)  # frozen after the clustering
    # the cluster networks in use now learn apart
    used = sorted(set(assignment.tolist()))
    assert not torch.equal(agent.fc_out.weight[used[0]], agent.fc_out.weight[used[1]])
    with pytest.raises(RuntimeError, match="clusters once"):
        policy.set_assignment(assignment, 0.0)


def test_the_acting_policy_uses_each_agents_network(small_lbf_config):
    cfg = _lbf(small_lbf_config, **{"seps.n_clusters": 2})
    algorithm = build_algorithm(cfg, EnvSpec.of(make_joint(cfg.env)))
    policy = algorithm.policy
    with torch.no_grad():
        for p in policy.agent.parameters():
            p[1] = torch.randn_like(p[1])  # network 1 differs from network 0
    x = torch.randn(1, 4, policy.inputs.dim)
    h = torch.zeros(1, 4, policy.agent.hidden_dim)
    labels = torch.tensor([0, 1, 1, 0])
    policy.set_assignment(labels, 0.5)
    q, _ = policy.agent.step(x, h, policy.agent_index(1))
    for net in (0, 1):
        alone, _ = policy.agent.step(x, h, torch.full((1, 4), net))
        rows = labels == net
        assert torch.equal(q[0, rows], alone[0, rows])
    # the training unroll reads the same assignment
    ep = {"inputs": torch.randn(2, 3, 4, policy.inputs.dim)}
    q_train = algorithm.agent_q_values(ep).q
    per_net = [policy.agent(ep["inputs"], index=torch.full((2, 3, 4), n)) for n in (0, 1)]
    assert torch.allclose(q_train, torch.where(labels[:, None] == 1, per_net[1], per_net[0]))


# ------------------------------------------------------------------ the learner process
CHILD_SEED = 1234


def test_the_parent_acts_with_the_childs_assignment(small_lbf_config, monkeypatch):
    cfg = _lbf(small_lbf_config)
    spec = EnvSpec.of(make_joint(cfg.env))
    torch.manual_seed(0)
    inline = build_algorithm(cfg, spec)
    overlapped = build_algorithm(cfg, spec)
    overlapped.load_state_dict(inline.state_dict())
    _, batches = _batches(inline, cfg, 4)
    inline.policy.torch_rng.manual_seed(CHILD_SEED)  # k-means draws as the child's
    monkeypatch.setattr(learner_process, "learner_seed", lambda algorithm: CHILD_SEED)
    for batch in batches[:3]:  # 2 pre-training updates, then the clustering one
        _update(inline, batch)
    assert inline.policy.clustered
    with LearnerProcess(overlapped, functools.partial(build_algorithm, cfg, spec)) as learner:
        overlapped.remote_learner = learner
        for batch in batches[:2]:
            learner.submit(batch)
        learner.sync()
        assert not overlapped.policy.clustered
        assert overlapped.policy.assignment.tolist() == [0, 0, 0, 0]
        learner.submit(batches[2])
        learner.sync()  # the clustering update is done in the child; its policy copied here
        assert overlapped.policy.clustered
        assert torch.equal(overlapped.policy.assignment, inline.policy.assignment)
        assert len(set(overlapped.policy.assignment.tolist())) >= 2
        for name, value in inline.policy.state_dict().items():
            assert torch.equal(overlapped.policy.state_dict()[name], value), name


def test_training_with_a_learner_process_clusters_and_checkpoints_it(small_lbf_config, tmp_path):
    cfg = _lbf(
        small_lbf_config,
        **{
            "training.total_steps": 600,
            "training.steps_per_update": 10,
            "training.log_interval": 10,
            "training.test_interval": 600,
            "training.overlap_learning": True,
            "seps.pretrain_steps": 200,
        },
    )
    result = train(cfg, tmp_path)
    with (result.logdir / "metrics.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["scope"] == "update"]
    flags = [float(r["value"]) for r in rows if r["metric"] == "seps_clustered"]
    assert flags[0] == 0.0 and flags[-1] == 1.0 and flags == sorted(flags)
    _, saved = load_checkpoint(result.checkpoint)
    state = saved["algorithm"]
    assert bool(state["policy.clusters.clustered"])
    labels = state["policy.clusters.labels"].tolist()
    k = [float(r["value"]) for r in rows if r["metric"] == "seps_k"][-1]
    assert len(set(labels)) == k >= 2
