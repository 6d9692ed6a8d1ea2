"""CDS's mechanism: the observation term of the intrinsic reward is ~0 when the agents'
transitions do not depend on their ids and clearly positive when one agent's do; the KL term is
0 for identical Q and positive otherwise; r_int reaches the TD targets (weighted, annealed); the
L1 penalty shrinks the local heads; the local heads are stacked per agent; presets and config."""

from __future__ import annotations

import pytest
import torch
from tianshou.algorithm.algorithm_base import torch_train_mode

from bdps_agents.algorithms import algorithm_spec
from bdps_agents.config import ConfigError, build_config
from bdps_agents.exploration import warmup
from bdps_agents.networks.cds import CDSAgent, observation_term, policy_divergence
from bdps_agents.networks.mixer import QMixer, VDNMixer
from bdps_agents.networks.qplex import QPLEXMixer
from bdps_agents.presets import load_config, scenario_names
from bdps_agents.training import build_run
from tests.algorithms.synthetic import synthetic_algorithm

N, OBS, ACTIONS, HIDDEN = 3, 4, 3, 8


def _learner(n_agents: int = N, **cds):
    """A CDS learner for a synthetic env (no env needed: only sizes)."""
    data = {"algorithm": {"name": "cds"}, "network": {"hidden_dim": HIDDEN}, "cds": cds}
    return synthetic_algorithm(data, n_agents, OBS, ACTIONS)


# ------------------------------------------------------------------ the observation term
def _transitions(planted: bool, generator: torch.Generator, steps: int = 1500):
    """Predictor rows (h, o, a, id) -> o': o' = o·W + (a-th row of V) + small noise for every
    agent; ``planted``: agent 0's o' also shifts by 2 in its first dimension (its transitions
    depend on its id)."""
    alg = _learner()
    h = torch.randn(steps, N, HIDDEN, generator=generator)
    o = torch.randn(steps, N, OBS, generator=generator)
    a = torch.randint(ACTIONS, (steps, N), generator=generator)
    W = torch.randn(OBS, OBS, generator=generator) / 2
    V = torch.randn(ACTIONS, OBS, generator=generator)
    o_next = o @ W + V[a] + 0.05 * torch.randn(steps, N, OBS, generator=generator)
    if planted:
        o_next[:, 0, 0] += 2.0
    x, ids = alg.predictors.inputs(h, o, a)
    return alg, x, ids, o_next


@pytest.mark.parametrize("planted", [False, True])
def test_observation_term_finds_identity_dependent_transitions(planted):
    torch.manual_seed(0)  # the predictors' initial weights
    generator = torch.Generator().manual_seed(0)
    alg, x, ids, o_next = _transitions(planted, generator)
    alg.predictor_epochs = 150  # the learner's own training path, run to convergence
    flat = [t[:1200].flatten(0, 1) for t in (x, ids, o_next)]
    loss_q, loss_p = alg.train_predictors(*flat)
    # held-out steps, per agent
    with torch.no_grad():
        log_q, log_p = alg.predictors(x[1200:], ids[1200:], o_next[1200:])
    term = observation_term(log_q, log_p, beta1=1.0).mean(0)  # (n,)
    print(
        f"planted={planted}: term per agent {term.tolist()}, losses q {loss_q:.3f} p {loss_p:.3f}"
    )
    if planted:
        # p cannot tell agent 0 apart: its error is ~(4/3)² on agent 0, ~(2/3)² on the others
        assert term.mean() > 0.5 and term[0] > 1.0
    else:
        assert term.abs().max() < 0.05


def test_observation_term_reference_form_is_not_zero_for_identical_agents():
    log_q = log_p = torch.full((5, N), -2.0)
    assert torch.equal(observation_term(log_q, log_p, 2.0), torch.zeros(5, N))
    assert torch.allclose(
        observation_term(log_q, log_p, 2.0, reference=True), torch.full((5, N), -2.0)
    )


# ------------------------------------------------------------------ the KL term
def test_kl_term_is_zero_for_identical_q_and_positive_otherwise():
    generator = torch.Generator().manual_seed(1)
    same = torch.randn(7, 1, ACTIONS, generator=generator).expand(7, N, ACTIONS)
    mask = torch.ones(7, N, ACTIONS, dtype=torch.bool)
    mask[:, :, -1] = torch.rand(7, 1, generator=generator) < 0.5  # same availability per step
    assert policy_divergence(same, mask, 2.0).abs().max() < 1e-6
    assert policy_divergence(same, None, 0.5).abs().max() < 1e-6
    different = same.clone()
    different[:, 0] += 3.0 * torch.randn(7, ACTIONS, generator=generator)
    kl = policy_divergence(different, None, 2.0)
    assert (kl > 1e-3).all()
    # an unavailable action's Q does not count: agents differing only there have KL 0
    masked = same.clone()
    masked[:, 0, -1] += 5.0
    off = torch.ones_like(mask)
    off[..., -1] = False
    assert policy_divergence(masked, off, 2.0).abs().max() < 1e-6
    assert policy_divergence(masked, None, 2.0).max() > 1e-3
    # the reference's form (the mean unscaled) is not zero for identical agents when c != 1
    assert policy_divergence(same, None, 2.0, reference=True).min() > 1e-3


# ------------------------------------------------------------------ r_int in the TD targets
def _episode(alg, generator: torch.Generator, B: int = 4, T: int = 5) -> dict:
    obs = torch.randn(B, T + 1, N, OBS, generator=generator)
    act = torch.randint(ACTIONS, (B, T, N), generator=generator)
    last = torch.zeros(B, T + 1, N, ACTIONS)
    last[:, 1:] = torch.nn.functional.one_hot(act, ACTIONS).float()
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[0, -2:] = False
    return {
        "inputs": alg.policy.inputs(obs, last),
        "obs": obs,
        "state": torch.randn(B, T + 1, 4, generator=generator),
        "act": act,
        "mask": torch.ones(B, T + 1, N, ACTIONS, dtype=torch.bool),
        "rew": torch.randn(B, T, generator=generator),
        "terminated": torch.zeros(B, T, dtype=torch.bool),
        "valid": valid,
    }


def test_td_rewards_add_beta_times_the_mean_of_both_terms_annealed():
    alg = _learner(beta=0.3, anneal_start_steps=100, anneal_steps=200)
    ep = _episode(alg, torch.Generator().manual_seed(2))
    with torch.no_grad():
        online = alg.agent_q_values(ep)
        obs_term, kl_term = alg.intrinsic_terms(ep, online)
        r_int = (obs_term + kl_term).mean(-1) * ep["valid"].float()
        assert r_int.abs().sum() > 0
        assert torch.allclose(alg.td_rewards(ep, online) - ep["rew"], 0.3 * r_int)
        # steps_per_update 50: annealing from update 2, over 4 updates
        alg.num_updates = 4
        assert alg.anneal_factor() == pytest.approx(0.5)
        assert torch.allclose(alg.td_rewards(ep, online) - ep["rew"], 0.15 * r_int)
        alg.num_updates = 10
        assert torch.equal(alg.td_rewards(ep, online), ep["rew"])
    assert _learner(beta=0.0).td_rewards(ep, online).equal(ep["rew"])


# ------------------------------------------------------------------ the agent and its L1 term
def test_local_heads_are_one_stacked_layer_indexed_by_agent():
    torch.manual_seed(3)
    agent = CDSAgent(5, ACTIONS, HIDDEN, N)
    x = torch.randn(2, 4, N, 5)
    q, local, hidden = agent(x, parts=True)
    shared = agent.fc_out(hidden)
    for i in range(N):  # the loop is the test's, to check the stacked product against
        head = hidden[:, :, i] @ agent.local.weight[i] + agent.local.bias[i]
        assert torch.allclose(local[:, :, i], head, atol=1e-6)
    assert torch.allclose(q, shared + local)
    # acting step by step gives the same Q as the training unroll
    h = agent.initial_state(2, N)
    for t in range(4):
        q_t, h = agent.step(x[:, t], h)
        assert torch.allclose(q_t, q[:, t], atol=1e-5)


def test_the_l1_term_alone_shrinks_the_local_heads_and_nothing_else():
    torch.manual_seed(4)
    agent = CDSAgent(5, ACTIONS, HIDDEN, N)
    x = torch.randn(8, 6, N, 5)
    optim = torch.optim.Adam(agent.parameters(), lr=1e-2)
    shared_before = [p.detach().clone() for p in agent.fc_out.parameters()]
    start = agent(x, parts=True)[1].abs().mean().item()
    for _ in range(100):
        loss = agent(x, parts=True)[1].abs().mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
    end = agent(x, parts=True)[1].abs().mean().item()
    assert end < 0.2 * start
    assert all(
        torch.equal(a, b) for a, b in zip(shared_before, agent.fc_out.parameters(), strict=True)
    )


def _local_l1_after_updates(l1_weight: float, small_lbf_config) -> float:
    # a large learning rate: 30 updates of Adam move the heads far enough to compare
    overrides = {"algorithm.name": "cds", "algorithm.lr": 5e-3, "cds.l1_weight": l1_weight}
    cfg = small_lbf_config(overrides)
    run = build_run(cfg)
    try:
        warmup(run.train_collector, n_episode=6)
        batch, indices = run.buffer.sample(4)
        batch = run.algorithm._preprocess_batch(batch, run.buffer, indices)
        with torch_train_mode(run.algorithm):
            for _ in range(30):
                stats = run.algorithm._update_with_batch(batch)
        return stats.local_l1
    finally:
        run.close()


def test_the_l1_weight_keeps_the_local_heads_smaller(small_lbf_config):
    off, on, strong = (_local_l1_after_updates(w, small_lbf_config) for w in (0.0, 1.0, 5.0))
    print(f"mean |Q_local| after 30 updates: weight 0 {off:.4f}, 1 {on:.4f}, 5 {strong:.4f}")
    assert strong < on < off and strong < 0.25 * off


# ------------------------------------------------------------------ the update
def test_an_update_trains_both_predictors_and_logs_the_terms(small_lbf_config):
    run = build_run(small_lbf_config({"algorithm.name": "cds"}))
    try:
        alg = run.algorithm
        warmup(run.train_collector, n_episode=6)
        batch, indices = run.buffer.sample(4)
        batch = alg._preprocess_batch(batch, run.buffer, indices)
        nets = {"with_id": alg.predictors.with_id, "without_id": alg.predictors.without_id}
        before = {k: [p.detach().clone() for p in m.parameters()] for k, m in nets.items()}
        target_before = [p.detach().clone() for p in alg.target_predictors.parameters()]
        with torch_train_mode(alg):
            stats = alg._update_with_batch(batch)
        for name, net in nets.items():
            changed = [
                not torch.equal(a, b) for a, b in zip(before[name], net.parameters(), strict=True)
            ]
            assert all(changed), name
        # the target predictors move with the target networks only (every 200 updates)
        assert all(
            torch.equal(a, b)
            for a, b in zip(target_before, alg.target_predictors.parameters(), strict=True)
        )
        for key in ("cds_obs_term", "cds_kl_term", "cds_intrinsic", "cds_reward_abs", "local_l1",
                    "cds_pred_loss_id", "cds_pred_loss_noid"):  # fmt: skip
            assert isinstance(getattr(stats, key), float), key
        assert stats.cds_kl_term >= 0 and stats.cds_anneal == 1.0
    finally:
        run.close()


# ------------------------------------------------------------------ mixer, inputs, presets
def test_mixer_qplex_by_default_cds_mixer_then_algorithm_mixer():
    assert isinstance(_learner().mixer, QPLEXMixer)
    assert isinstance(_learner(mixer="qmix").mixer, QMixer)
    cfg = build_config({"algorithm": {"name": "cds", "mixer": "vdn"}, "cds": {"mixer": "qmix"}})
    assert algorithm_spec("cds").label(cfg) == "cds-vdn"
    assert _learner(agent_id_input=False).policy.inputs.agent_id is False
    assert _learner().policy.inputs.agent_id is True  # network.agent_id_input's default


def test_built_with_vdn_when_algorithm_mixer_says_so(small_lbf_config):
    run = build_run(small_lbf_config({"algorithm.name": "cds", "algorithm.mixer": "vdn"}))
    try:
        assert isinstance(run.algorithm.mixer, VDNMixer)
    finally:
        run.close()


@pytest.mark.parametrize("scenario", scenario_names())
def test_every_scenario_has_a_cds_preset_that_validates(scenario):
    preset = algorithm_spec("cds").preset(scenario)
    assert preset is not None, scenario
    cfg = load_config(scenario, ["algorithm.name=cds"])
    assert cfg.options == cfg.options.model_validate(preset)
    family, _, name = scenario.partition("/")
    assert cfg.options.agent_id_input is False
    assert cfg.options.mixer == ("qmix" if family == "grf" else "qplex")
    expected = {"corridor": (0.5, 0.5, 0.1), "MMM2": (2.0, 1.0, 0.07), "6h_vs_8z": (2.0, 1.0, 0.1),
                "3s5z_vs_3s6z": (2.0, 1.0, 0.03)}  # fmt: skip
    betas = (cfg.options.beta1, cfg.options.beta2, cfg.options.beta)
    if family == "grf":
        assert betas == (0.5, 1.0, 0.05)
    elif name in expected:
        b1, b2, b = expected[name]
        # SMAX's return tops at 2, SMAC's (the reference's) at 20: β scaled to keep β·r_int : r
        assert betas == (b1, b2, b / 10 if family == "smax" else b)
    if family == "smax":
        assert cfg.options.beta == pytest.approx(0.01) or name in expected
    assert (cfg.options.anneal_start_steps is not None) == (name == "corridor")


@pytest.mark.parametrize(
    ("section", "needle"),
    [({"mixer": "qmixx"}, "unknown mixer 'qmixx'"), ({"beta": -1.0}, "beta"),
     ({"predictor_minibatch": 0}, "predictor_minibatch"), ({"anneal_steps": 0}, "anneal_steps")],
)  # fmt: skip
def test_bad_cds_settings_are_refused_naming_the_key(section, needle):
    with pytest.raises(ConfigError, match=needle):
        build_config({"algorithm": {"name": "cds"}, "cds": section})
