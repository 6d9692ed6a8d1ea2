"""Role selector (GRU-VAE) and group selector (GAT + GRU) on small hand-checked inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bdps_agents.networks.group_selector import GraphAttention, GroupOutput, GroupSelector
from bdps_agents.networks.role_selector import RoleOutput, RoleSelector, gaussian_kl

ROLE_GROUP = [(2, 2), (3, 2), (5, 2)]
N_ACTIONS, WINDOW = 6, 5


def _adv(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, WINDOW, N_ACTIONS, generator=g)
    return q.max(-1, keepdim=True).values - q  # A = max Q - Q >= 0


# ---------------------------------------------------------------- role selector


@pytest.mark.parametrize("n_roles", [2, 3, 5])
def test_role_is_argmax_of_sampled_latent(n_roles):
    torch.manual_seed(0)
    sel = RoleSelector(N_ACTIONS, n_roles, WINDOW, hidden_dim=16, vae_hidden_dim=16)
    with torch.no_grad():  # wide posterior so the sample visibly moves the argmax
        sel.encoder[-1].bias[n_roles:] += 2.0
    adv = _adv(64)
    out = sel(adv, generator=torch.Generator().manual_seed(7))
    assert isinstance(out, RoleOutput)
    eps = torch.randn(out.mu.shape, generator=torch.Generator().manual_seed(7))
    z = out.mu + torch.exp(0.5 * out.logvar) * eps
    torch.testing.assert_close(out.z, z)
    assert out.role.dtype == torch.long and out.role.shape == (64,)
    assert torch.equal(out.role, z.argmax(-1))
    assert not torch.allclose(out.z, out.mu)
    assert not torch.equal(out.role, out.mu.argmax(-1))  # sampling matters with sigma ~ e
    assert out.recon.shape == adv.shape and out.mu.shape == out.logvar.shape == (64, n_roles)

    det = sel(adv, sample=False)
    assert torch.equal(det.z, det.mu) and torch.equal(det.role, det.mu.argmax(-1))
    torch.testing.assert_close(det.mu, out.mu)


def test_role_selector_rejects_wrong_window():
    sel = RoleSelector(N_ACTIONS, 2, WINDOW)
    with pytest.raises(ValueError):
        sel(torch.zeros(3, WINDOW + 1, N_ACTIONS))


def test_gaussian_kl_closed_form():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    logvar = torch.tensor([[0.0, 0.0], [np.log(4.0), 0.0]], dtype=torch.float32)
    # per dim: 0.5 * (sigma^2 + mu^2 - 1 - log sigma^2)
    row1 = 0.5 * (4.0 + 1.0 - 1.0 - np.log(4.0)) + 0.5 * (1.0 + 4.0 - 1.0 - 0.0)
    torch.testing.assert_close(gaussian_kl(mu, logvar), torch.tensor([0.0, float(row1)]))


def test_loss_kl_term_uses_encoder_output():
    sel = RoleSelector(N_ACTIONS, 3, WINDOW)
    adv = _adv(4)
    out = sel(adv, generator=torch.Generator().manual_seed(0))
    mu = torch.tensor([[0.5, -1.0, 0.0]]).expand(4, 3)
    logvar = torch.tensor([[0.0, 1.0, -1.0]]).expand(4, 3)
    out = out._replace(mu=mu, logvar=logvar)
    total, mse, kl = sel.loss(adv, out, kl_weight=0.25)
    expected_kl = 0.5 * sum(
        np.exp(lv) + m**2 - 1.0 - lv for m, lv in [(0.5, 0.0), (-1.0, 1.0), (0.0, -1.0)]
    )
    torch.testing.assert_close(kl, torch.tensor(expected_kl, dtype=torch.float32))
    torch.testing.assert_close(mse, (out.recon - adv).pow(2).mean())
    torch.testing.assert_close(total, mse + 0.25 * kl)


def test_vae_mse_decreases_with_adam():
    torch.manual_seed(0)
    sel = RoleSelector(N_ACTIONS, 3, WINDOW, hidden_dim=32, vae_hidden_dim=32)
    adv = _adv(32)
    opt = torch.optim.Adam(sel.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    first = None
    for _ in range(40):
        total, mse, _ = sel.loss(adv, sel(adv, generator=gen), kl_weight=1e-3)
        first = mse.item() if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    with torch.no_grad():
        _, last, _ = sel.loss(adv, sel(adv, sample=False), kl_weight=1e-3)
    assert last.item() < 0.7 * first


def test_zero_weight_excludes_samples():
    torch.manual_seed(0)
    sel = RoleSelector(N_ACTIONS, 3, WINDOW)
    adv = _adv(5)
    garbage = torch.full((1, WINDOW, N_ACTIONS), 1e3)
    both = torch.cat([adv, garbage])
    out_all = sel(both, sample=False)
    with_garbage = sel.loss(both, out_all, 0.5, weight=torch.tensor([1, 1, 1, 1, 1, 0]))
    out = sel(adv, sample=False)
    without = sel.loss(adv, out, 0.5)
    for a, b in zip(with_garbage, without, strict=True):
        torch.testing.assert_close(a, b)
    # fractional weights are weighted means
    w = torch.tensor([1.0, 2.0, 0.0, 0.0, 1.0])
    mse_rows = (out.recon - adv).pow(2).flatten(1).mean(-1)
    torch.testing.assert_close(sel.loss(adv, out, 0.0, weight=w)[1], (w * mse_rows).sum() / 4)


def test_all_zero_weight_gives_zero_not_nan():
    sel = RoleSelector(N_ACTIONS, 2, WINDOW)
    adv = _adv(3)
    total, mse, kl = sel.loss(adv, sel(adv), 1.0, weight=torch.zeros(3))
    for t in (total, mse, kl):
        assert torch.isfinite(t) and t.item() == 0.0
    total.backward()  # still differentiable, gradients are zero
    assert all(torch.isfinite(p.grad).all() for p in sel.parameters() if p.grad is not None)


# ---------------------------------------------------------------- graph attention


def _gat_inputs(B=3, n=5, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, n, d, generator=g)
    alive = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [0, 0, 1, 0, 0]], dtype=torch.bool)[
        :B, :n
    ]
    return x, alive


@pytest.mark.parametrize("heads", [2, 3, 5])
def test_gat_attention_masks_dead_agents(heads):
    torch.manual_seed(0)
    gat = GraphAttention(8, 128, heads)
    x, alive = _gat_inputs()
    out, att = gat(x, alive)
    assert out.shape == (3, 5, 128) and att.shape == (3, heads, 5, 5)
    assert torch.isfinite(out).all() and torch.isfinite(att).all()
    torch.testing.assert_close(att.sum(-1), torch.ones(3, heads, 5))  # every row sums to 1
    alive_row = alive[:, None, :, None]  # (B, 1, i, 1)
    dead_col = ~alive[:, None, None, :]  # (B, 1, 1, j)
    assert (att.masked_select(alive_row & dead_col) == 0).all()
    # a dead agent attends to itself only, and outputs zeros
    for b, i in (~alive).nonzero().tolist():
        assert torch.equal(att[b, :, i], torch.eye(5)[i].expand(heads, 5))
        assert (out[b, i] == 0).all()
    # alive agents attend to every alive agent (softmax, so strictly positive)
    assert (att.masked_select(alive_row & alive[:, None, None, :]) > 0).all()


def test_gat_dead_inputs_do_not_change_alive_outputs():
    torch.manual_seed(0)
    gat = GraphAttention(8, 16, 3)
    x, alive = _gat_inputs()
    out, att = gat(x, alive)
    x2 = x.clone()
    x2[~alive] = torch.randn(int((~alive).sum()), 8) * 100
    out2, att2 = gat(x2, alive)
    assert torch.equal(out, out2) and torch.equal(att, att2)
    # whereas an alive agent's features do matter to the others
    x3 = x.clone()
    x3[0, 0] += 1.0
    assert not torch.allclose(gat(x3, alive)[0][0, 1:], out[0, 1:])


def test_gat_single_survivor_no_nan():
    gat = GraphAttention(4, 6, 2)
    alive = torch.tensor([[False, False, True, False]])
    out, att = gat(torch.randn(1, 4, 4), alive)
    assert torch.isfinite(out).all() and torch.isfinite(att).all()
    assert torch.equal(att[0, :, 2], torch.tensor([0.0, 0.0, 1.0, 0.0]).expand(2, 4))
    (out.sum() + att.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in gat.parameters())


def test_gat_output_dim_and_projection():
    assert GraphAttention(8, 128, 2).proj is None  # 2 heads x 64 is exactly 128
    gat = GraphAttention(8, 128, 3)  # 3 heads x 43 = 129 -> Linear to 128
    assert gat.head_dim == 43 and gat.proj.in_features == 129 and gat.proj.out_features == 128


def test_gat_matches_per_head_reference():
    """The batched einsum equals Eq. 4-5 written out for one head, one graph."""
    torch.manual_seed(0)
    gat = GraphAttention(4, 6, 2)  # head_dim 3, no projection
    x = torch.randn(1, 3, 4)
    alive = torch.ones(1, 3, dtype=torch.bool)
    out, att = gat(x, alive)
    for k in range(2):
        wx = x[0] @ gat.weight[k]  # (n, head_dim)
        a = torch.cat([gat.att_dst[k], gat.att_src[k]])
        e = torch.stack(
            [torch.stack([a @ torch.cat([wx[i], wx[j]]) for j in range(3)]) for i in range(3)]
        )
        alpha = torch.softmax(torch.nn.functional.leaky_relu(e, 0.2), -1)
        torch.testing.assert_close(att[0, k], alpha)
        torch.testing.assert_close(
            out[0, :, 3 * k : 3 * k + 3], torch.nn.functional.elu(alpha @ wx)
        )


# ---------------------------------------------------------------- group selector


def _roles(B, J, n, n_roles, seed=0):
    g = torch.Generator().manual_seed(seed)
    roles = torch.randint(0, n_roles, (B, J, n), generator=g)
    alive = torch.rand(B, J, n, generator=g) > 0.3
    alive[..., 0] = True
    return roles, alive


@pytest.mark.parametrize(("n_roles", "n_groups"), ROLE_GROUP)
def test_group_selector_shapes_and_heads(n_roles, n_groups):
    sel = GroupSelector(n_roles, n_groups)
    assert sel.gat.heads == n_roles and sel.gat.out_dim == 128 and sel.hidden_dim == 64
    roles, alive = _roles(2, 1, 6, n_roles)
    out = sel(roles[:, 0], alive[:, 0], sel.initial_state(2, 6))
    assert isinstance(out, GroupOutput)
    assert out.q.shape == (2, 6, n_groups)
    assert out.h.shape == (2, 6, 64)
    assert out.attention.shape == (2, n_roles, 6, 6)


@pytest.mark.parametrize(("n_roles", "n_groups"), ROLE_GROUP)
def test_unroll_matches_stepping(n_roles, n_groups):
    torch.manual_seed(0)
    sel = GroupSelector(n_roles, n_groups, embed_dim=16, gat_dim=24, hidden_dim=8)
    B, J, n = 2, 4, 5
    roles, alive = _roles(B, J, n, n_roles)
    q, att = sel.unroll(roles, alive)
    assert q.shape == (B, J, n, n_groups) and att.shape == (B, J, n_roles, n, n)
    h = sel.initial_state(B, n)
    for j in range(J):
        step = sel(roles[:, j], alive[:, j], h)
        h = step.h
        torch.testing.assert_close(q[:, j], step.q)
        torch.testing.assert_close(att[:, j], step.attention)


def test_dead_agent_role_placeholder_is_ignored():
    sel = GroupSelector(3, 2)
    roles, alive = _roles(2, 1, 5, 3)
    roles, alive = roles[:, 0], alive[:, 0]
    alive[:, 1] = False
    h = sel.initial_state(2, 5)
    a = sel(roles, alive, h)
    roles2 = roles.clone()
    roles2[:, 1] = -1
    b = sel(roles2, alive, h)
    torch.testing.assert_close(a.q, b.q)


def test_group_selector_gradients_reach_all_parts():
    torch.manual_seed(0)
    sel = GroupSelector(3, 2)
    roles, alive = _roles(2, 3, 4, 3)
    q, _ = sel.unroll(roles, alive)
    q.pow(2).sum().backward()
    for name, p in sel.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_epsilon_greedy():
    q = torch.randn(50, 4, 3)
    rng = np.random.default_rng(0)
    greedy = GroupSelector.epsilon_greedy(q, 0.0, rng)
    assert greedy.shape == (50, 4) and greedy.dtype == torch.long
    assert torch.equal(greedy, q.argmax(-1))
    rand = GroupSelector.epsilon_greedy(q, 1.0, rng)
    assert set(rand.flatten().tolist()) == {0, 1, 2}
    # with eps = 1 the choice ignores q: about a third of rows pick the argmax
    assert 0.2 < (rand == q.argmax(-1)).float().mean().item() < 0.47
    half = GroupSelector.epsilon_greedy(q, 0.5, rng)
    agree = (half == q.argmax(-1)).float().mean().item()  # 0.5 + 0.5 / 3
    assert 0.55 < agree < 0.78
