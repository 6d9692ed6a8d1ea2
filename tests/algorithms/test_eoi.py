"""EOI's mechanism: the identity classifier finds a planted identity signal and nothing in
identical agents; the exploration replaces actions only by available ones, at the configured
rates; the soft update moves the target the fraction τ toward the online net; the agents and
mixer are QMIX's; what acting did reaches the learner's statistics; every scenario has a preset."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step, torch_train_mode
from tianshou.data import Batch
from torch import nn

from bdps_agents.algorithms import algorithm_spec, build_algorithm
from bdps_agents.algorithms.eoi.intrinsic import (
    IdentityClassifier,
    IntrinsicQ,
    Transitions,
    intrinsic_targets,
    soft_update,
)
from bdps_agents.algorithms.eoi.learner import EOI
from bdps_agents.algorithms.eoi.policy import EOIPolicy
from bdps_agents.config import ConfigError, build_config
from bdps_agents.exploration import warmup
from bdps_agents.networks.agent import RecurrentAgent
from bdps_agents.policy import AgentInputs, masked_argmax
from bdps_agents.presets import load_config, scenario_names
from bdps_agents.training import build_run, load_checkpoint, train
from tests.algorithms.synthetic import synthetic_algorithm

OBS, ACTIONS = 6, 5


def _learner(n_agents: int, **eoi) -> EOI:
    """An EOI learner for a synthetic env of ``n_agents`` (only sizes are needed)."""
    cfg_data = {"algorithm": {"name": "eoi"}, "network": {"hidden_dim": 8}, "eoi": eoi}
    return synthetic_algorithm(cfg_data, n_agents, OBS, ACTIONS)


def _observations(n: int, rows: int, planted: bool, generator: torch.Generator):
    """(obs (rows, OBS), agent (rows,)): noise, plus 4 on feature i for agent i if planted."""
    agent = torch.randint(n, (rows,), generator=generator)
    obs = torch.randn(rows, OBS, generator=generator)
    if planted:
        obs[torch.arange(rows), agent] += 4.0
    return obs, agent


def _transitions(n: int, rows: int, planted: bool, generator: torch.Generator) -> Transitions:
    obs, agent = _observations(n, rows, planted, generator)
    next_obs, _ = _observations(n, rows, False, generator)
    if planted:  # the next observation carries the identity (the classifier trains on it)
        next_obs[torch.arange(rows), agent] += 4.0
    return Transitions(
        obs=obs,
        next_obs=next_obs,
        agent=agent,
        act=torch.randint(ACTIONS, (rows,), generator=generator),
        done=torch.zeros(rows),
        next_mask=torch.ones(rows, ACTIONS, dtype=torch.bool),
    )


# ------------------------------------------------------------------ the classifier
@pytest.mark.parametrize("planted", [True, False])
def test_the_classifier_finds_a_planted_identity_and_nothing_in_identical_agents(planted):
    torch.manual_seed(0)
    n = 4
    learner = _learner(n, classifier_lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(40):  # 40 updates of 8 minibatches
        stats = learner.train_intrinsic(_transitions(n, 2048, planted, generator))
    obs, agent = _observations(n, 4000, planted, generator)  # held out
    accuracy = learner.policy.classifier.accuracy(obs, agent)
    reward = learner.policy.classifier.prob_of(obs, agent).mean().item()
    if planted:
        assert accuracy > 0.9 and stats["eoi_accuracy"] > 0.9
        assert reward > 0.8  # r_i / scale = P(i | o_i): the agent is recognised
    else:  # chance, 1/N
        assert abs(accuracy - 1 / n) < 0.05 and abs(stats["eoi_accuracy"] - 1 / n) < 0.05
        assert abs(reward - 1 / n) < 0.05


def test_the_classifier_loss_is_cross_entropy_plus_weighted_entropy():
    torch.manual_seed(0)
    clf = IdentityClassifier(OBS, 3, hidden=8)
    obs, agent = torch.randn(10, OBS), torch.randint(3, (10,))
    p = torch.softmax(clf.net(obs), -1)
    ce = -torch.log(p[torch.arange(10), agent]).mean()
    entropy = -(p * torch.log(p)).sum(-1).mean()
    loss, _ = clf.loss(obs, agent, entropy_weight=0.1)
    assert torch.allclose(loss, ce + 0.1 * entropy, atol=1e-6)


# ------------------------------------------------------------------ Q^p and its target
def test_the_soft_update_moves_the_target_the_fraction_tau_toward_the_online_net():
    online, target = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        for p in online.parameters():
            p.fill_(1.0)
        for p in target.parameters():
            p.fill_(0.0)
    soft_update(target, online, tau=0.25)
    assert all(torch.equal(p, torch.full_like(p, 0.25)) for p in target.parameters())
    soft_update(target, online, tau=0.25)  # 0.75 * 0.25 + 0.25 * 1
    assert all(torch.equal(p, torch.full_like(p, 0.4375)) for p in target.parameters())
    soft_update(target, online, tau=1.0)  # a copy
    assert all(
        torch.equal(p, q) for p, q in zip(target.parameters(), online.parameters(), strict=True)
    )


def test_the_learner_soft_updates_its_target_after_each_intrinsic_step():
    torch.manual_seed(0)
    learner = _learner(2, target_tau=0.25, minibatch=64)
    before = [p.detach().clone() for p in learner.target_intrinsic_q.parameters()]
    # one minibatch: one Q^p step, then one soft update
    learner.train_intrinsic(_transitions(2, 64, True, torch.Generator().manual_seed(0)))
    online = list(learner.policy.intrinsic_q.parameters())
    for old, new, current in zip(
        before, learner.target_intrinsic_q.parameters(), online, strict=True
    ):
        assert torch.allclose(new, 0.75 * old + 0.25 * current, atol=1e-7)
        assert not torch.allclose(new, current)


def test_intrinsic_targets_bootstrap_over_available_actions_until_termination():
    next_q = torch.tensor([[1.0, 5.0, 2.0], [1.0, 5.0, 2.0], [1.0, 5.0, 2.0]])
    mask = torch.tensor([[True, False, True], [True, True, True], [False, False, False]])
    y = intrinsic_targets(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.0, 1.0, 0.0]), next_q,
                          mask, gamma=0.5)  # fmt: skip
    # max over available (2), terminated (no bootstrap), no action available (max over all)
    assert y.tolist() == [0.5 + 0.5 * 2.0, 0.5, 0.5 + 0.5 * 5.0]


# ------------------------------------------------------------------ acting
def _policy(n: int, episode_prob: float, explore_ratio: float, seed: int = 0) -> EOIPolicy:
    torch.manual_seed(seed)
    inputs = AgentInputs(n, OBS, ACTIONS, last_action=True, agent_id=False)
    return EOIPolicy(
        agent=RecurrentAgent(inputs.dim, ACTIONS, 8),
        inputs=inputs,
        action_space=gym.spaces.MultiDiscrete([ACTIONS] * n),
        classifier=IdentityClassifier(OBS, n, 8),
        intrinsic_q=IntrinsicQ(OBS, n, ACTIONS, 8),
        episode_prob=episode_prob,
        explore_ratio=explore_ratio,
        eps_training=0.0,
        seed=seed,
    )


def _random_masks(rng: np.random.Generator, R: int, n: int) -> np.ndarray:
    mask = rng.random((R, n, ACTIONS)) < 0.4
    single = rng.random((R, n)) < 0.3  # some agents have exactly one available action
    one = np.eye(ACTIONS, dtype=bool)[rng.integers(ACTIONS, size=(R, n))]
    mask = np.where(single[..., None], one, mask)
    return np.where(mask.any(-1, keepdims=True), mask, one)


def test_replaced_actions_are_available_greedy_intrinsic_actions_at_the_expected_rate():
    n, R, steps, ratio = 3, 256, 40, 0.3
    policy = _policy(n, episode_prob=1.0, explore_ratio=ratio)
    rng = np.random.default_rng(0)
    state, replaced, unmasked_unavailable, singles = None, 0, 0, 0
    who = np.zeros(n)
    with policy_within_training_step(policy):
        for _ in range(steps):
            obs = rng.normal(size=(R, n, OBS)).astype(np.float32)
            mask = _random_masks(rng, R, n)
            batch = Batch(obs=Batch(obs=obs, mask=mask))
            prior = policy.initial_state(R) if state is None else state
            with torch.no_grad():  # QMIX's greedy actions (ε = 0)
                q, _ = policy.agent_q(batch.obs, prior)
                greedy = masked_argmax(q, torch.as_tensor(mask)).numpy()
            out = policy(batch, state)
            state = out.state
            act, agent = out.act, out.policy.eoi_agent
            assert (out.policy.eoi_episode == 1).all()
            assert np.array_equal(state.last_act, np.eye(ACTIONS)[act])
            rows = np.flatnonzero(agent >= 0)
            j = agent[rows].astype(np.int64)
            chosen = act[rows, j]
            assert mask[rows, j, chosen].all()  # every replaced action is available
            qp = policy.intrinsic_q(torch.as_tensor(obs[rows, j]), torch.as_tensor(j)).detach()
            want = masked_argmax(qp, torch.as_tensor(mask[rows, j])).numpy()
            assert np.array_equal(chosen, want)
            unmasked_unavailable += int((~mask[rows, j, qp.argmax(-1).numpy()]).sum())
            singles += int((mask[rows, j].sum(-1) == 1).sum())
            # only that agent's action changed
            keep = np.ones((R, n), dtype=bool)
            keep[rows, j] = False
            assert np.array_equal(act[keep], greedy[keep])
            replaced += len(rows)
            who += np.bincount(j, minlength=n)
    share = replaced / (R * steps)
    assert abs(share - ratio) < 0.03, share
    assert np.all(np.abs(who / replaced - 1 / n) < 0.05), who
    # the mask mattered: an unmasked argmax would often pick an unavailable action
    assert unmasked_unavailable > 100 and singles > 100


def test_episodes_are_eoi_enabled_at_the_configured_rate_kept_and_redrawn_at_a_reset():
    R = 4000
    policy = _policy(2, episode_prob=0.4, explore_ratio=0.0)
    batch = Batch(obs=Batch(obs=np.zeros((R, 2, OBS), np.float32), mask=np.ones((R, 2, ACTIONS))))
    with policy_within_training_step(policy):
        first = policy(batch)
        flags = first.policy.eoi_episode.copy()
        assert abs(flags.mean() - 0.4) < 0.03
        second = policy(batch, first.state)  # the same episodes: the flags stay
        assert np.array_equal(second.policy.eoi_episode, flags)
        assert (second.policy.eoi_agent == -1).all()  # explore_ratio 0: nothing replaced
        state = second.state
        ended = np.arange(R) < R // 2  # as the Collector zeroes the state of ended episodes
        state.t[ended], state.eoi[ended] = 0, False
        third = policy(batch, state).policy.eoi_episode
        assert np.array_equal(third[~ended], flags[~ended])
        assert abs(third[ended].mean() - 0.4) < 0.04
        assert not np.array_equal(third[ended], flags[ended])
    # test episodes: never enabled
    test = _policy(2, episode_prob=1.0, explore_ratio=1.0)(batch)
    assert (test.policy.eoi_episode == 0).all() and (test.policy.eoi_agent == -1).all()


# ------------------------------------------------------------------ the learner on LBF
def test_the_agents_and_mixer_are_qmix_and_train_as_qmix(small_lbf_config):
    run = build_run(small_lbf_config({"algorithm.name": "eoi"}))
    try:
        warmup(run.train_collector, n_episode=6)
        batch, indices = run.buffer.sample(4)
        batch = run.algorithm._preprocess_batch(batch, run.buffer, indices)
        torch.manual_seed(run.cfg.training.seed)  # as build_run seeds the networks
        qmix = build_algorithm(small_lbf_config({"algorithm.name": "qmix"}), run.spec)
        eoi = run.algorithm
        pairs = [(eoi.policy.agent, qmix.policy.agent), (eoi.mixer, qmix.mixer)]
        for a, b in pairs:
            assert all(
                torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True)
            )
        with torch_train_mode(eoi), torch_train_mode(qmix):
            s_eoi, s_qmix = eoi._update_with_batch(batch), qmix._update_with_batch(batch)
        assert s_eoi.loss == s_qmix.loss and s_eoi.td_loss == s_qmix.td_loss
        for a, b in pairs:
            assert all(
                torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True)
            )
    finally:
        run.close()


@pytest.mark.parametrize(("episode_prob", "explore_ratio"), [(1.0, 1.0), (0.0, 1.0)])
def test_what_acting_did_reaches_the_update_statistics(small_lbf_config, episode_prob,
                                                       explore_ratio):  # fmt: skip
    cfg = small_lbf_config(
        {"algorithm.name": "eoi", "eoi.episode_prob": episode_prob,
         "eoi.explore_ratio": explore_ratio}
    )  # fmt: skip
    run = build_run(cfg)
    try:
        warmup(run.train_collector, n_episode=6)
        batch, indices = run.buffer.sample(4)
        batch = run.algorithm._preprocess_batch(batch, run.buffer, indices)
        with torch_train_mode(run.algorithm):
            stats = run.algorithm._update_with_batch(batch)
        n = run.spec.n_agents
        assert stats.eoi_episode_share == episode_prob
        assert stats.eoi_replaced_share == pytest.approx(episode_prob / n)  # one agent a step
        assert (stats.eoi_replace_rate == 1.0) if episode_prob else stats.eoi_replace_rate is None
        assert 0.0 <= stats.eoi_accuracy <= 1.0 and stats.eoi_minibatches >= 1
        assert 0.0 < stats.intrinsic_reward < 10.0 and stats.intrinsic_td_loss > 0.0
        assert {"eoi_accuracy", "eoi_replaced_share"} <= set(stats.get_loss_stats_dict())
    finally:
        run.close()


# ------------------------------------------------------------------ settings
def test_every_scenario_has_an_eoi_preset_with_the_references_explore_ratio():
    spec = algorithm_spec("eoi")
    special = {"2c_vs_64zg": 0.2, "5m_vs_6m": 0.2, "3s_vs_5z": 0.8}
    for name in scenario_names():
        assert spec.preset(name) is not None, name
        cfg = load_config(name, ["algorithm.name=eoi"])
        want = special.get(name.partition("/")[2], 0.05)
        assert cfg.options.explore_ratio == want and cfg.options.episode_prob == 0.4, name


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match="eoi.explore_ratio"):
        build_config({"algorithm": {"name": "eoi"}, "eoi": {"explore_ratio": 1.5}})
    with pytest.raises(ConfigError, match="eoi.reward_obs"):
        build_config({"algorithm": {"name": "eoi"}, "eoi": {"reward_obs": "previous"}})


def test_a_run_with_the_learner_process_logs_eoi_and_checkpoints_its_models(
    small_lbf_config, tmp_path
):
    cfg = small_lbf_config(
        {
            "algorithm.name": "eoi",
            "eoi.episode_prob": 1.0,
            "eoi.explore_ratio": 0.5,
            "training.total_steps": 600,
            "training.steps_per_update": 10,
            "training.log_interval": 10,
            "training.test_interval": 600,
            "training.overlap_learning": True,
        }
    )
    result = train(cfg, tmp_path)
    with (result.logdir / "metrics.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["scope"] == "update"]
    rates = [float(r["value"]) for r in rows if r["metric"] == "eoi_replace_rate"]
    shares = [float(r["value"]) for r in rows if r["metric"] == "eoi_episode_share"]
    assert rates and shares and all(s == 1.0 for s in shares)
    assert 0.3 < float(np.mean(rates)) < 0.7  # explore_ratio 0.5, counted where acting happened
    assert {r["metric"] for r in rows} >= {"eoi_accuracy", "intrinsic_td_loss", "intrinsic_reward"}
    # the checkpoint holds the child's trained models, target and optimisers
    _, saved = load_checkpoint(result.checkpoint)
    state = saved["algorithm"]
    initial = build_run(cfg)  # the same seed: the run's initial weights
    fresh = initial.algorithm.state_dict()
    initial.close()
    for key in ("policy.intrinsic_q.net.0.weight", "policy.classifier.net.0.weight",
                "target_intrinsic_q.net.0.weight"):  # fmt: skip
        assert not torch.equal(state[key], fresh[key]), key
    assert len(state["_optimizers"]) == 3  # QMIX's, the classifier's, Q^p's
