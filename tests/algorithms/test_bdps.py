"""BDPS: assignment timing, role = argmax z, gradient routing, reduction to QMIX, configs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step

from bdps_agents.algorithms.bdps.diagnostics import masked_advantage
from bdps_agents.algorithms.bdps.learner import BDPS
from bdps_agents.algorithms.bdps.policy import BDPSPolicy
from bdps_agents.algorithms.qmix.algorithm import QMIX
from bdps_agents.config import ConfigError
from bdps_agents.training import build_run

T_U, E = 3, 2  # T_V = 6

BASE = {
    "env": {
        "adapter": "lbf",
        "kwargs": {"task": "8x8-3p-2f", "max_episode_steps": 20},
        "num_train_envs": 2,
        "num_test_envs": 1,
    },
    "algorithm": {"name": "bdps"},
    "network": {"hidden_dim": 16},
    "bdps": {"n_roles": 3, "n_groups": 2, "role_interval": T_U, "group_interval_multiple": E},
    "replay": {"capacity_episodes": 40, "batch_episodes": 4, "warmup_episodes": 4},
    "training": {"progress": False, "seed": 3},
}


@pytest.fixture
def make_cfg(config_with):
    """``make_cfg(**sections)``: ``BASE`` with some sections updated, validated."""

    def _cfg(**sections):
        # another algorithm's run takes no BDPS section (it would be refused)
        bdps_chosen = sections.get("algorithm", {}).get("name", "bdps") == "bdps"
        base = BASE if bdps_chosen else {k: v for k, v in BASE.items() if k != "bdps"}
        return config_with(base, **sections)

    return _cfg


def _collect(run, episodes: int, eps: float = 1.0):
    with policy_within_training_step(run.policy):
        run.policy.set_eps_training(eps)
        run.train_collector.reset()
        run.train_collector.collect(n_episode=episodes)
    starts = run.buffer.sample_indices(0)
    return run.buffer.episode_batch(starts)


def test_roles_change_only_every_T_U_and_groups_every_T_V(make_cfg):
    run = build_run(make_cfg())
    try:
        ep = _collect(run, episodes=12)
    finally:
        run.close()
    role, group, valid = ep.policy.role, ep.policy.group, ep.valid
    T = role.shape[1]
    changed_role = (role[:, 1:] != role[:, :-1]).any(-1) & valid[:, 1:]
    changed_group = (group[:, 1:] != group[:, :-1]).any(-1) & valid[:, 1:]
    steps = np.arange(1, T)
    assert not changed_role[:, steps % T_U != 0].any(), "a role changed between role updates"
    assert not changed_group[:, steps % (T_U * E) != 0].any(), "a group changed between updates"
    # and they do change at update steps (random VAE samples, ε = 1 for groups)
    assert (
        changed_role[:, steps % T_U == 0].any() and changed_group[:, steps % (T_U * E) == 0].any()
    )


@pytest.mark.parametrize("training", [True, False])
def test_role_is_argmax_of_the_latent_sampled_in_training_and_the_mean_in_tests(make_cfg, training):
    """Roles at t = 0 are i mod k; later ones are argmax z, z sampled while training and z = mu
    in test episodes (deterministic evaluation)."""
    run = build_run(make_cfg())
    policy: BDPSPolicy = run.policy
    captured = []
    original = policy.role_selector.forward

    def capture(adv, sample=True, generator=None):
        out = original(adv, sample=sample, generator=generator)
        captured.append(out)
        return out

    policy.role_selector.forward = capture  # type: ignore[method-assign]
    obs, _ = run.train_envs.reset()
    from contextlib import nullcontext

    from tianshou.data import Batch

    state = None
    decisions = 0
    try:
        with policy_within_training_step(policy) if training else nullcontext():
            for t in range(2 * T_U + 1):
                out = policy(Batch(obs=Batch(obs), info=Batch()), state)
                if t == 0:
                    assert not captured, "the selector was asked at t = 0"
                    expected = np.arange(policy.n_agents) % policy.role_selector.n_roles
                    assert (out.state.role == expected).all()
                if captured:
                    decisions += 1
                    z = captured[-1].z.view(len(out.act), -1, policy.role_selector.n_roles)
                    np.testing.assert_array_equal(out.state.role, z.argmax(-1).numpy())
                    assert torch.equal(captured[-1].z, captured[-1].mu) != training
                    captured.clear()
                state = out.state
                obs, *_ = run.train_envs.step(out.act)
    finally:
        run.close()
    assert decisions == 2


def test_gradients_reach_only_assigned_role_and_group_networks(make_cfg):
    run = build_run(make_cfg())
    alg: BDPS = run.algorithm
    ep = alg.episode_tensors(_collect(run, episodes=4))
    run.close()
    ep["role"] = torch.full_like(ep["role"], 2)  # everybody in role 2 of {0, 1, 2}
    ep["group"] = torch.full_like(ep["group"], 1)  # everybody in group 1 of {0, 1}
    loss, _ = alg.td_loss(ep)
    loss.backward()
    policy = alg.policy
    for layer in (
        policy.agent.fc_in,
        policy.agent.rnn.ih,
        policy.agent.rnn.hh,
        policy.agent.fc_out,
    ):
        assert layer.weight.grad[:2].abs().sum() == 0, "an unassigned role network got gradient"
        assert layer.weight.grad[2].abs().sum() > 0
    for layer in (policy.group_agent.fc_in, policy.group_agent.fc_out):
        assert layer.weight.grad[0].abs().sum() == 0, "an unassigned group network got gradient"
        assert layer.weight.grad[1].abs().sum() > 0


def test_individual_mode_with_one_role_in_use_equals_qmix(make_cfg):
    """With every agent in role 0 and role network 0 = the QMIX agent, the single-level BDPS TD
    loss and its Q-values equal QMIX's on the same batch."""
    torch.manual_seed(0)
    bdps_run = build_run(make_cfg(bdps={"levels": 1}))
    qmix_run = build_run(make_cfg(algorithm={"name": "qmix"}))
    bdps, qmix = bdps_run.algorithm, qmix_run.algorithm
    assert isinstance(qmix, QMIX) and not isinstance(qmix, BDPS)
    batch = _collect(bdps_run, episodes=4)
    bdps_run.close()
    qmix_run.close()
    with torch.no_grad():
        for name, p in qmix.policy.agent.named_parameters():
            bdps.policy.agent.get_parameter(name)[0].copy_(p[0])
        bdps.mixer.load_state_dict(qmix.mixer.state_dict())
    for wrapper_b, wrapper_q in ((bdps.target_agent, qmix.target_agent),):
        with torch.no_grad():
            for name, p in wrapper_q.module.named_parameters():
                wrapper_b.module.get_parameter(name)[0].copy_(p[0])
    bdps.target_mixer.module.load_state_dict(qmix.target_mixer.module.state_dict())
    ep_b = bdps.episode_tensors(batch)
    ep_b["role"] = torch.zeros_like(ep_b["role"])
    ep_q = qmix.episode_tensors(batch)
    loss_b, stats_b = bdps.td_loss(ep_b)
    loss_q, stats_q = qmix.td_loss(ep_q)
    torch.testing.assert_close(loss_b, loss_q)
    assert {k: float(v) for k, v in stats_b.items()} == pytest.approx(
        {k: float(v) for k, v in stats_q.items()}
    )


def test_full_mode_is_the_core_qmix_and_trains_identically(make_cfg):
    """algorithm.name=qmix builds the core QMIX learner; two runs from the same seed give the same
    losses; BDPS options cannot reach the baseline (its section is refused for a QMIX run)."""
    with pytest.raises(ConfigError, match="section 'bdps'"):
        make_cfg(algorithm={"name": "qmix"}, bdps={"n_roles": 2, "role_interval": 4})
    losses = []
    for _ in range(2):
        cfg = make_cfg(algorithm={"name": "qmix"})
        run = build_run(cfg)
        assert type(run.algorithm) is QMIX
        _collect(run, episodes=6)
        with policy_within_training_step(run.policy):
            losses.append([run.algorithm.update(run.buffer, 4).loss for _ in range(3)])
        run.close()
    assert losses[0] == losses[1]


@pytest.mark.parametrize("group_input", ["roles", "roles+id", "roles+trajectory"])
def test_bdps_update_logs_diagnostics(make_cfg, group_input):
    run = build_run(make_cfg(bdps={"group_selector_input": group_input}))
    _collect(run, episodes=6)
    with policy_within_training_step(run.policy):
        stats = run.algorithm.update(run.buffer, 4)
    run.close()
    flat = stats.get_loss_stats_dict()
    for key in (
        "td_loss",
        "role_loss",
        "vae_mse",
        "vae_kl",
        "group_loss",
        "delta_h",
        "role_switch_rate",
        "role_switch_rate_indep",
        "group_switch_rate",
        "group_switch_rate_indep",
        "role_recon_ratio",
        "role_latent_snr",
        "roles_per_env",
        "groups_per_env",
        "role_0_frac",
        "role_2_frac",
        "group_1_frac",
    ):
        assert key in flat and np.isfinite(flat[key]), key
    assert sum(flat[f"role_{k}_frac"] for k in range(3)) == pytest.approx(1.0)
    assert sum(flat[f"group_{g}_frac"] for g in range(2)) == pytest.approx(1.0)
    assert flat["loss"] == pytest.approx(flat["td_loss"] + flat["role_loss"] + flat["group_loss"])
    assert 1.0 <= flat["roles_per_env"] <= 3.0 and 1.0 <= flat["groups_per_env"] <= 2.0


def test_masked_advantage_is_nonnegative_and_zero_at_the_best_available_action():
    q = torch.tensor([[1.0, 5.0, 3.0]])
    mask = torch.tensor([[True, False, True]])
    torch.testing.assert_close(masked_advantage(q, mask), torch.tensor([[2.0, 0.0, 0.0]]))


@pytest.mark.parametrize(
    ("bdps", "message"),
    [
        ({"n_roles": 2, "n_groups": 3}, "n_roles"),
        ({"n_groups": 1}, "n_groups"),
        ({"n_roles": 1}, "n_roles"),
        ({"group_interval_multiple": 0}, "group_interval_multiple"),
        ({"group_interval_multiple": 1.5}, "group_interval_multiple"),
        ({"role_interval": 0}, "role_interval"),
        ({"kl_weight": -1}, "kl_weight"),
    ],
)
def test_bdps_config_rejects_bad_values(make_cfg, bdps, message):
    with pytest.raises(ConfigError, match=message):
        make_cfg(bdps=bdps)


@pytest.mark.parametrize(
    ("bdps", "message"),
    [
        ({"n_roles": 4, "n_groups": 2}, r"exceeds the number of agents \(n=3\)"),
        ({"role_interval": 20}, "T_U.*below the episode limit"),
        ({"role_interval": 7, "group_interval_multiple": 3}, "T_V.*below the episode limit"),
    ],
)
def test_bdps_config_checked_against_the_env(make_cfg, bdps, message):
    with pytest.raises(ConfigError, match=message):
        build_run(make_cfg(bdps=bdps))


def _episode_roles(run, seed: int) -> list[np.ndarray]:
    """Roles of a test episode (outside training steps) played from env seed ``seed``."""
    from tianshou.data import Batch

    obs, _ = run.test_envs.reset(seed=seed)
    state, roles = None, []
    for _ in range(20):
        out = run.policy(Batch(obs=Batch(obs), info=Batch()), state)
        roles.append(np.asarray(out.state.role).copy())
        state = out.state
        obs, *_ = run.test_envs.step(out.act)
    return roles


@pytest.mark.parametrize("sample_at_test", [False, True])
def test_test_episodes_are_deterministic_unless_roles_are_sampled(make_cfg, sample_at_test):
    run = build_run(make_cfg(bdps={"sample_roles_at_test": sample_at_test}))
    policy: BDPSPolicy = run.policy
    with torch.no_grad():  # a wide posterior, so that sampling visibly changes roles
        policy.role_selector.encoder[-1].bias[policy.role_selector.n_roles :] += 3.0
    try:
        first, second = _episode_roles(run, 11), _episode_roles(run, 11)
    finally:
        run.close()
    same = all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert same != sample_at_test


def test_dead_agents_windows_do_not_enter_the_role_loss_or_statistics(make_cfg):
    run = build_run(make_cfg())
    alg: BDPS = run.algorithm
    ep = alg.episode_tensors(_collect(run, episodes=4))
    run.close()
    ep["alive"][:, :, 0] = False  # agent 0 dead throughout
    selector, rng = alg.policy.role_selector, alg.policy.torch_rng
    saved, rng_state = copy.deepcopy(selector.state_dict()), rng.get_state()
    q = torch.randn(*ep["mask"].shape)

    def loss_with(q_values):
        selector.load_state_dict(saved)
        rng.set_state(rng_state)
        with torch.no_grad():
            return alg.role_loss(ep, q_values)

    base, stats = loss_with(q)
    changed = q.clone()
    changed[:, :, 0] = 100.0 * torch.randn_like(changed[:, :, 0])  # only the dead agent's Q
    other, other_stats = loss_with(changed)
    assert torch.equal(base, other) and stats == other_stats
    alive_changed = q.clone()
    alive_changed[:, :, 1] += torch.randn_like(alive_changed[:, :, 1])
    assert not torch.equal(base, loss_with(alive_changed)[0])  # the check can fail
    # shares count the two alive agents only: agent 0's roles are all set to 2, unseen
    ep["role"][:, :, 0] = 2
    ep["role"][:, :, 1:] = 0
    _, stats = loss_with(q)
    assert stats["role_0_frac"] == 1.0 and stats["roles_per_env"] == 1.0
