"""The fast paths (``bdps_agents.settings``: the GRU recurrence as one autograd node with a
hand-written backward, fused Adam) compute what autograd and PyTorch's default Adam compute, for
every registered algorithm's whole update too; grouped products (``RowGroups``) route each row
through its own group's weights only; the unroll is ``nn.GRU``'s arithmetic."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from tianshou.algorithm.algorithm_base import torch_train_mode

from bdps_agents import settings
from bdps_agents.exploration import warmup
from bdps_agents.networks.stacked import RowGroups, StackedGRUCell, StackedLinear
from bdps_agents.training import build_run


@contextlib.contextmanager
def fast_paths(enabled: bool):
    previous = settings.set_fast_paths(enabled)
    try:
        yield
    finally:
        settings.set_fast_paths(previous)


@pytest.mark.parametrize("counts", [(70, 0, 5), (1, 1, 1), (300, 200, 100)])
def test_grouped_rows_go_through_their_own_group_only(counts):
    """RowGroups on imbalanced, empty and single-row groups: each row's output is its group's
    layer of it, and the gradients are those of a per-row gather of the weights."""
    torch.manual_seed(1)
    index = torch.cat([torch.full((c,), g) for g, c in enumerate(counts)])
    index = index[torch.randperm(len(index))].view(-1, 1)
    layer = StackedLinear(len(counts), 6, 9)
    x = torch.randn(len(index), 1, 6, requires_grad=True)
    got = layer(x, RowGroups.of(index, len(counts)))
    want = torch.einsum("rki,rio->rko", x, layer.weight[index[:, 0]]) + layer.bias[index]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(want)
    params = (x, layer.weight, layer.bias)
    grads = torch.autograd.grad((got * weights).sum(), params)
    expected = torch.autograd.grad((want * weights).sum(), params)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    empty = [g for g, c in enumerate(counts) if c == 0]
    assert all(grads[1][g].abs().sum() == 0 for g in empty)


@pytest.mark.parametrize("mode", ["shared", "slot", "index"])
@pytest.mark.parametrize("T", [1, 7])
def test_the_fused_unroll_matches_autograd_through_the_steps(mode, T):
    """float64: hidden states and every gradient (inputs, initial state, both layers), the
    hand-written backward against autograd of the same steps, for the three ways cells are
    shared. The fused unroll is one autograd node; the plain one is not."""
    torch.manual_seed(4)
    G, B, n, D, H = 3, 5, 3, 7, 16
    cell = StackedGRUCell(1 if mode == "shared" else G, D, H).double()
    index = torch.randint(0, G, (T, B, n)) if mode == "index" else None
    x = torch.randn(T, B, n, D, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, n, H, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(T, B, n, H, dtype=torch.float64)
    params = [x, h0, *cell.parameters()]

    def run(enabled: bool):
        with fast_paths(enabled):
            hs = cell.unroll(x, h0, index)
        return hs, torch.autograd.grad((hs * weights).sum(), params)

    fast, fast_grads = run(True)
    plain, plain_grads = run(False)
    assert type(fast.grad_fn).__name__ == "GRUSequenceBackward"
    assert type(plain.grad_fn).__name__ != "GRUSequenceBackward"
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-10)
    for got, want in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_unroll_and_the_acting_step_are_nn_gru(enabled):
    """A one-cell StackedGRUCell holding an nn.GRU's weights gives nn.GRU's hidden states, in a
    training unroll (either path) and step by step as when acting."""
    torch.manual_seed(5)
    D, H = 6, 16
    gru = torch.nn.GRU(D, H, batch_first=True)
    cell = StackedGRUCell(1, D, H)
    with torch.no_grad():
        cell.ih.weight[0].copy_(gru.weight_ih_l0.T)
        cell.ih.bias[0].copy_(gru.bias_ih_l0)
        cell.hh.weight[0].copy_(gru.weight_hh_l0.T)
        cell.hh.bias[0].copy_(gru.bias_hh_l0)
    x = torch.randn(40, 5, D)
    want = gru(x)[0].transpose(0, 1)  # (T, N, H)
    with fast_paths(enabled):
        got = cell.unroll(x.transpose(0, 1), torch.zeros(40, H))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    h = torch.zeros(40, H)
    for t in range(x.shape[1]):
        h = cell(x[:, t], h)
        torch.testing.assert_close(h, want[t], rtol=1e-5, atol=1e-5)


def test_the_hand_written_backward_is_not_differentiated_again():
    """``once_differentiable``: a second derivative is refused, not silently wrong."""
    cell = StackedGRUCell(1, 3, 4)
    x = torch.randn(2, 1, 3, requires_grad=True)
    weights = torch.randn(2, 1, 4, requires_grad=True)  # the gradient flowing in has a graph
    with fast_paths(True):
        hs = cell.unroll(x, torch.zeros(1, 4))
    (grad,) = torch.autograd.grad((hs * weights).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


def test_the_fast_paths_compute_the_same_update(algorithm_variant, small_lbf_config):
    """One update of every registered algorithm variant from the same state and batch, fast
    paths on and off: the loss, the gradient norm and every parameter's gradient agree to float
    tolerance, and the optimiser is fused only with them on. (Not the updated parameters:
    Adam's first step moves each by ±lr whatever its gradient's size, so a gradient of
    float-noise size may step either way.)"""
    with fast_paths(True):
        run = build_run(small_lbf_config(algorithm_variant))
    try:
        warmup(run.train_collector, n_episode=6)
        batch, indices = run.buffer.sample(4)
        batch = run.algorithm._preprocess_batch(batch, run.buffer, indices)
        twin = copy.deepcopy(run.algorithm)
        with fast_paths(True), torch_train_mode(run.algorithm):
            fast = run.algorithm._update_with_batch(batch)
        with fast_paths(False), torch_train_mode(twin):
            plain = twin._update_with_batch(batch)
        assert fast.loss == pytest.approx(plain.loss, rel=1e-4, abs=1e-6)
        assert fast.grad_norm == pytest.approx(plain.grad_norm, rel=1e-4, abs=1e-6)
        for (name, got), want in zip(
            run.algorithm.named_parameters(), twin.parameters(), strict=True
        ):
            if got.grad is None:
                assert want.grad is None, name
                continue
            scale = float(want.grad.abs().max())
            torch.testing.assert_close(
                got.grad, want.grad, rtol=1e-3, atol=1e-4 * scale + 1e-7, msg=name
            )
    finally:
        run.close()
    with fast_paths(False):
        plain_run = build_run(small_lbf_config(algorithm_variant))
    try:
        optimisers = [m for m in vars(plain_run.algorithm).values() if hasattr(m, "_optim")]
        assert optimisers, "the learner should hold an optimiser"
        assert all(not o._optim.defaults.get("fused") for o in optimisers)
        assert any(
            o._optim.defaults.get("fused")
            for o in vars(run.algorithm).values()
            if hasattr(o, "_optim")
        )
    finally:
        plain_run.close()
