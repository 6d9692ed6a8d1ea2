"""Planted-structure tests of BDPS's learned assignments and of the diagnostics that judge them.

Each learned part is trained on data whose answer is known and must find it, and must report
"no information" where there is none:

* role selector: windows from k well-separated clusters -> roles recover the clusters and the
  reconstruction ratio is far below 1; unstructured or identical windows -> ratio ≈ 1;
* group selector: agents with the same role but different trajectories, rewarded for taking
  different groups -> with the trajectory input they do; with roles alone they cannot;
* the statistics (switch rate against independent draws, distinct assignments per env) and
  the scale of the windows.
"""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
import torch

from bdps_agents.algorithms.bdps.diagnostics import scaled_entropy_gap
from bdps_agents.algorithms.decisions import assignment_stats
from bdps_agents.networks.group_selector import GroupSelector
from bdps_agents.networks.mixer import QMixer
from bdps_agents.networks.role_selector import RoleSelector

T_U, N_ACTIONS = 5, 6


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=np.int64)
    np.add.at(table, (a, b), 1)
    pairs = sum(comb(int(x), 2) for x in table.flat)
    rows = sum(comb(int(x), 2) for x in table.sum(1))
    cols = sum(comb(int(x), 2) for x in table.sum(0))
    expected = rows * cols / comb(len(a), 2)
    return (pairs - expected) / ((rows + cols) / 2 - expected)


def fit_role_selector(windows: torch.Tensor, k: int, seed: int, kl_weight: float = 0.01):
    """A fresh role selector trained on ``windows`` as BDPS.role_loss trains it."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sel = RoleSelector(N_ACTIONS, k, T_U, hidden_dim=32, vae_hidden_dim=32)
    opt = torch.optim.Adam(sel.parameters(), lr=3e-3)
    for _ in range(800):
        idx = torch.randint(len(windows), (256,), generator=g)
        sel.update_scale(windows[idx])
        loss, _, _ = sel.loss(windows[idx], sel(windows[idx], generator=g), kl_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return sel


def advantage_scale_windows(n: int, g: torch.Generator, k: int = 0):
    """Windows at LBF's advantage scale (element std ≈ 0.03): k cluster prototypes plus small
    noise, or (k = 0) uniform noise with no structure. Returns (windows, cluster labels)."""
    if k == 0:
        return 0.03 * torch.rand(n, T_U, N_ACTIONS, generator=g), torch.zeros(n, dtype=torch.long)
    prototypes = 0.09 * torch.rand(k, T_U, N_ACTIONS, generator=g)
    labels = torch.randint(k, (n,), generator=g)
    noise = 0.003 * torch.randn(n, T_U, N_ACTIONS, generator=g)
    return (prototypes[labels] + noise).clamp_min(0.0), labels


# ------------------------------------------------------------------------- role selector


@pytest.mark.parametrize("seed", [0, 1])
def test_roles_recover_planted_clusters_of_advantage_windows(seed):
    g = torch.Generator().manual_seed(100 + seed)
    windows, labels = advantage_scale_windows(3000, g, k=2)
    sel = fit_role_selector(windows[:2000], k=2, seed=seed)
    held_out, labels = windows[2000:], labels[2000:]  # fresh draws of the same clusters
    with torch.no_grad():
        out = sel(held_out, sample=False)
    info = sel.information(held_out, out)
    assert adjusted_rand_index(out.role.numpy(), labels.numpy()) >= 0.9
    assert info["role_recon_ratio"] < 0.5
    assert info["role_latent_snr"] > 0.5


def test_unstructured_windows_give_a_recon_ratio_near_one():
    """Uniform noise windows: nothing beyond the mean window can be predicted on fresh windows,
    so the ratio stays near 1 where the planted clusters above give < 0.5."""
    g = torch.Generator().manual_seed(7)
    train, _ = advantage_scale_windows(2000, g)
    sel = fit_role_selector(train, k=2, seed=0)
    fresh, _ = advantage_scale_windows(1000, g)
    with torch.no_grad():
        info = sel.information(fresh, sel(fresh, sample=False))
    assert info["role_recon_ratio"] > 0.85


def test_identical_windows_say_no_information():
    windows = torch.full((500, T_U, N_ACTIONS), 0.02)
    sel = fit_role_selector(windows, k=3, seed=0)
    with torch.no_grad():
        out = sel(windows, sample=False)
    info = sel.information(windows, out)
    assert info["role_recon_ratio"] == 1.0
    assert info["role_latent_snr"] < 1e-6
    roles = out.role.view(100, 5, 1)  # 100 decisions x 5 agents
    stats = assignment_stats("role", roles.squeeze(-1)[None], torch.ones(1, 100, 5).bool(), 3)
    assert stats["roles_per_env"] == 1.0
    assert stats["role_switch_rate"] == stats["role_switch_rate_indep"] == 0.0


def test_running_scale_tracks_the_window_moments_and_loads_old_checkpoints():
    sel = RoleSelector(N_ACTIONS, 2, T_U)
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        sel.update_scale(0.5 + 0.03 * torch.randn(64, T_U, N_ACTIONS, generator=g))
    assert float(sel.adv_mean) == pytest.approx(0.5, abs=2e-3)
    assert float(sel.adv_var.sqrt()) == pytest.approx(0.03, rel=0.05)
    scaled = sel.scaled(0.5 + 0.03 * torch.randn(256, T_U, N_ACTIONS, generator=g))
    assert float(scaled.std()) == pytest.approx(1.0, rel=0.05)
    # padded / dead windows (weight 0) do not move the moments
    before = sel.adv_mean.clone(), sel.adv_var.clone()
    sel.update_scale(torch.full((8, T_U, N_ACTIONS), 100.0), torch.zeros(8))
    assert torch.equal(before[0], sel.adv_mean) and torch.equal(before[1], sel.adv_var)
    # the moments are state: saved, restored, and absent from old checkpoints (identity scale)
    fresh = RoleSelector(N_ACTIONS, 2, T_U)
    fresh.load_state_dict(sel.state_dict())
    assert torch.equal(fresh.adv_var, sel.adv_var)
    old = {k: v for k, v in sel.state_dict().items() if k not in ("adv_mean", "adv_var")}
    old.pop("scale_updates")
    fresh = RoleSelector(N_ACTIONS, 2, T_U)
    fresh.load_state_dict(old)
    x = torch.rand(4, T_U, N_ACTIONS)
    assert torch.equal(fresh.scaled(x), x)


# ------------------------------------------------------------------------ group selector


def _train_group_bandit(feature_dim: int, seed: int = 0):
    """Two agents with the same role; trait ±1 per agent, in random order per episode, seen
    only through a trajectory feature. Team reward = number of agents whose group equals
    its trait's group: the best grouping separates the two agents. One decision per episode,
    random groups (ε = 1), trained as BDPS trains L_V (mixed chosen values vs reward)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    n, B, H = 2, 64, 8
    sel = GroupSelector(
        n_roles=2,
        n_groups=2,
        embed_dim=16,
        gat_dim=16,
        hidden_dim=16,
        agent_feature_dim=feature_dim,
    )
    mixer = QMixer(n, 1, 8, 16)
    opt = torch.optim.Adam([*sel.parameters(), *mixer.parameters()], lr=3e-3)
    direction = torch.randn(H, generator=g)

    def episode(batch: int):
        trait = torch.stack([torch.randperm(n, generator=g) for _ in range(batch)])  # 0/1
        traj = (2.0 * trait - 1.0)[..., None] * direction  # (batch, n, H)
        roles = torch.zeros(batch, 1, n, dtype=torch.long)
        alive = torch.ones(batch, 1, n, dtype=torch.bool)
        return trait, roles, alive, (traj[:, None] if feature_dim else None)

    for _ in range(400):
        trait, roles, alive, traj = episode(B)
        q, _ = sel.unroll(roles, alive, features=traj)  # (B, 1, n, m)
        group = torch.randint(2, (B, 1, n), generator=g)
        reward = (group[:, 0] == trait).float().sum(-1, keepdim=True)  # (B, 1)
        chosen = q.gather(-1, group[..., None]).squeeze(-1)
        q_tot = mixer(chosen, torch.zeros(B, 1, 1))
        loss = (q_tot - reward).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    trait, roles, alive, traj = episode(500)
    with torch.no_grad():
        q, _ = sel.unroll(roles, alive, features=traj)
    greedy = q.argmax(-1)  # (500, 1, n)
    accuracy = float((greedy[:, 0] == trait).float().mean())
    stats = assignment_stats("group", greedy.view(1, 500, n), alive.view(1, 500, n), 2)
    return accuracy, stats["groups_per_env"]


def test_group_selector_separates_equal_roles_by_trajectory():
    accuracy, per_env = _train_group_bandit(feature_dim=8)
    assert accuracy > 0.95 and per_env > 1.9


def test_group_selector_with_roles_alone_cannot_separate_equal_roles():
    accuracy, per_env = _train_group_bandit(feature_dim=0)
    assert per_env == 1.0  # same inputs, same values, same greedy group for both agents
    assert accuracy == pytest.approx(0.5, abs=0.06)


def test_group_selector_refuses_missing_or_unexpected_trajectory():
    with_traj = GroupSelector(2, 2, agent_feature_dim=4)
    roles, alive = torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.bool)
    h = with_traj.initial_state(1, 3)
    with pytest.raises(ValueError, match="per-agent features of size 4"):
        with_traj(roles, alive, h)
    with pytest.raises(ValueError, match="without per-agent features"):
        GroupSelector(2, 2)(roles, alive, h, torch.zeros(1, 3, 4))


# ---------------------------------------------------------------------------- statistics


def test_assignment_stats_against_hand_counts():
    # 1 env, 4 decisions, 3 agents; agent 2 dead from decision 2 on
    assign = torch.tensor([[[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 1, 0]]])
    valid = torch.tensor([[[1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 1, 0]]]).bool()
    s = assignment_stats("role", assign, valid, 2)
    # valid pairs: 0,0,1 | 0,1,1 | 1,1 | 1,1 -> 3 zeros, 7 ones
    assert s["role_0_frac"] == pytest.approx(0.3) and s["role_1_frac"] == pytest.approx(0.7)
    # consecutive valid pairs: (d0->d1) 3, (d1->d2) 2, (d2->d3) 2 = 7; changes: 1 + 1 + 0 = 2
    assert s["role_switch_rate"] == pytest.approx(2 / 7)
    assert s["role_switch_rate_indep"] == pytest.approx(1 - 0.3**2 - 0.7**2)
    assert s["roles_per_env"] == pytest.approx((2 + 2 + 1 + 1) / 4)


def test_scaled_entropy_gap_compares_shapes_not_scale():
    mask = torch.ones(1, 4, dtype=torch.bool)
    valid = torch.ones(1, dtype=torch.bool)
    peaked, flat = torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.tensor([[0.1, 0.1, 0.0, 0.1]])
    gaps = [scaled_entropy_gap(peaked * s, flat * s, mask, valid) for s in (1e-3, 1.0, 1e3)]
    assert gaps[0] == pytest.approx(gaps[1], rel=1e-4) == pytest.approx(gaps[2], rel=1e-4)
    assert gaps[0] > 0.05  # Q^V flatter than Q^U -> positive ΔH
    assert scaled_entropy_gap(peaked, peaked, mask, valid) == pytest.approx(0.0, abs=1e-6)
