"""G independent layers stored as one stacked tensor and selected by index.

This is how parameter sharing is expressed without Python loops over agents or roles (the
SePS / TorchRL ``MultiAgentMLP`` idea): a layer holds weights of shape ``(G, in, out)`` for G
sharing groups, and each input row says which group's weights it uses.

Three ways to choose the weights, picked by what the caller passes:

* ``G == 1``: every row uses the one network (full sharing); a plain matmul.
* ``index is None`` and the second-to-last input dim equals G: slot g uses network g (no
  sharing, one network per agent); one batched ``einsum``, no wasted compute.
* ``index`` given (a long tensor shaped like the input without its last dim): assignments that
  change over time (roles, groups). The input is spread into the slot of its group
  (``onehot(index) ⊗ x``, shape ``(..., G * in)``) and multiplied by the weights viewed as one
  ``(G * in, out)`` matrix: a single GEMM forward and backward. G is small (2-5 in the paper);
  on CPU this beats computing all G outputs and gathering (benchmarks/README.md, "Measurements
  behind design choices"). It suits few rows (acting, one step of the training recurrence).
* ``index`` given as :class:`RowGroups` (the training unroll's input and output layers, applied
  to every time step at once): rows sorted by group into a padded ``(G, rows, in)`` block, one
  batched GEMM, then back to their places. Each row is multiplied by its own group's weights
  only, so the work is that of one shared layer (plus the padding of smaller groups) instead of
  G times it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class RowGroups:
    """Where each row of a many-row input goes when rows are sorted by group.

    Built once per assignment (:meth:`of`) and shared by every layer that sees the same rows.
    ``slot[r]`` is row r's place in the padded ``(G * size, ...)`` block: group ``g`` fills places
    ``g * size ...`` in row order, ``size`` = the largest group. ``source`` is the inverse: the
    row each place is read from (padding places read row 0; their outputs are dropped, so their
    gradients are zero)."""

    slot: torch.Tensor  # (N,) long
    source: torch.Tensor  # (G * size,) long
    groups: int
    size: int
    shape: tuple[int, ...]  # leading dims of the inputs

    @classmethod
    def of(cls, index: torch.Tensor, groups: int) -> RowGroups:
        """``index``: long group per row, any shape (the inputs' leading dims)."""
        flat = index.reshape(-1)
        onehot = nn.functional.one_hot(flat, groups)
        rank = (onehot.cumsum(0) - 1).gather(1, flat[:, None]).squeeze(1)  # place in its group
        size = int(onehot.sum(0).max())
        slot = flat * size + rank
        source = flat.new_zeros(groups * size).index_copy_(
            0, slot, torch.arange(len(flat), device=flat.device)
        )
        return cls(slot, source, groups, size, tuple(index.shape))

    def apply(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x (*shape, in)`` through group ``index[r]``'s ``weight (G, in, out)`` and bias."""
        x2 = x.reshape(-1, x.shape[-1])
        in_dim, out_dim = weight.shape[-2:]
        if in_dim < out_dim:
            # a ones column carries the bias through the product: one pass over the narrower
            # input instead of over the (MB-sized) output
            x2 = torch.cat([x2, x2.new_ones((len(x2), 1))], 1)
            padded = x2.index_select(0, self.source).view(self.groups, self.size, in_dim + 1)
            out = padded @ torch.cat([weight, bias[:, None]], 1)
        else:  # the output is the narrower: broadcast the bias into it
            padded = x2.index_select(0, self.source).view(self.groups, self.size, in_dim)
            out = torch.baddbmm(bias[:, None], padded, weight)
        return out.view(-1, out_dim).index_select(0, self.slot).view(*self.shape, out_dim)


class StackedLinear(nn.Module):
    """``G`` linear layers ``in_dim -> out_dim`` with weights ``(G, in_dim, out_dim)``."""

    def __init__(self, groups: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        self.groups, self.in_dim, self.out_dim = groups, in_dim, out_dim
        self.weight = nn.Parameter(torch.empty(groups, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(groups, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # same init as torch.nn.Linear, per group
        bound = 1.0 / math.sqrt(self.in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def onehot(self, index: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``index`` as one-hot rows; a float tensor is taken as already one-hot (callers that
        reuse one assignment for many layers or steps convert it once)."""
        if index.is_floating_point():
            return index.to(dtype)
        return nn.functional.one_hot(index, self.groups).to(dtype)

    def forward(
        self, x: torch.Tensor, index: torch.Tensor | RowGroups | None = None
    ) -> torch.Tensor:
        """``index``: group per row, as a long tensor, its one-hot float form ``(..., G)``, or
        :class:`RowGroups`."""
        if self.groups == 1:
            return nn.functional.linear(x, self.weight[0].T, self.bias[0])
        if isinstance(index, RowGroups):
            return index.apply(x, self.weight, self.bias)
        if index is None:
            if x.shape[-2] != self.groups:
                raise ValueError(
                    f"StackedLinear with {self.groups} groups needs an index, or inputs with one "
                    f"slot per group (dim -2 == {self.groups}); got shape {tuple(x.shape)}"
                )
            return torch.einsum("...gi,gio->...go", x, self.weight) + self.bias
        onehot = self.onehot(index, x.dtype)  # (..., G)
        spread = (onehot.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)  # (..., G * in)
        flat_weight = self.weight.reshape(self.groups * self.in_dim, self.out_dim)
        return spread @ flat_weight + onehot @ self.bias

    # -- hand-written gradients, for the fused recurrent unroll (_GRUSequence) -----------------
    def input_grad(self, grad_out: torch.Tensor, onehot: torch.Tensor | None) -> torch.Tensor:
        """d loss / d x of ``forward(x, onehot)`` given d loss / d out (``onehot``: float, None)."""
        if self.groups == 1:
            return grad_out @ self.weight[0].T
        if onehot is None:
            return torch.einsum("...go,gio->...gi", grad_out, self.weight)
        flat_weight = self.weight.reshape(self.groups * self.in_dim, self.out_dim)
        spread = (grad_out @ flat_weight.T).unflatten(-1, (self.groups, self.in_dim))
        return (spread * onehot.unsqueeze(-1)).sum(-2)

    def param_grads(
        self, x: torch.Tensor, grad_out: torch.Tensor, onehot: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """d loss / d (weight, bias) of ``forward(x, onehot)``, summed over all leading dims in
        one product (the fused unroll calls it once for all time steps)."""
        if self.groups == 1:
            x2, g2 = x.reshape(-1, self.in_dim), grad_out.reshape(-1, self.out_dim)
            return (x2.T @ g2).unsqueeze(0), g2.sum(0, keepdim=True)
        if onehot is None:
            x3 = x.reshape(-1, self.groups, self.in_dim)
            g3 = grad_out.reshape(-1, self.groups, self.out_dim)
            return torch.einsum("rgi,rgo->gio", x3, g3), g3.sum(0)
        oh = onehot.reshape(-1, self.groups)
        spread = (oh.unsqueeze(-1) * x.reshape(-1, 1, self.in_dim)).flatten(-2)
        g2 = grad_out.reshape(-1, self.out_dim)
        weight = (spread.T @ g2).view(self.groups, self.in_dim, self.out_dim)
        return weight, oh.T @ g2


class StackedGRUCell(nn.Module):
    """``G`` GRU cells (PyTorch gate order r, z, n) with stacked weights.

    The input projection is split from the recurrence (``input_gates`` / ``step_from_gates``).
    A training unroll (:meth:`unroll`) of G > 1 cells computes ``W_ih x`` for all time steps in
    one call (rows sorted by group, :class:`RowGroups`), leaving only the small ``W_hh h``
    product in the time loop; one shared cell projects each step's inputs inside the loop.
    """

    def __init__(self, groups: int, in_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.ih = StackedLinear(groups, in_dim, 3 * hidden_dim)
        self.hh = StackedLinear(groups, hidden_dim, 3 * hidden_dim)
        bound = 1.0 / math.sqrt(hidden_dim)  # torch.nn.GRUCell's init
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def input_gates(
        self, x: torch.Tensor, index: torch.Tensor | RowGroups | None = None
    ) -> torch.Tensor:
        return self.ih(x, index)

    def step_from_gates(
        self, gi: torch.Tensor, h: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        gh = self.hh(h, index)
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return n + z * (h - n)  # == (1 - z) * n + z * h

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.ih.groups == 1:  # ATen's fused cell: same math, less time per acting step
            flat = torch.gru_cell(
                x.reshape(-1, x.shape[-1]),
                h.reshape(-1, self.hidden_dim),
                self.ih.weight[0].T,
                self.hh.weight[0].T,
                self.ih.bias[0],
                self.hh.bias[0],
            )
            return flat.view(h.shape)
        return self.step_from_gates(self.input_gates(x, index), h, index)

    def unroll(
        self,
        x: torch.Tensor,
        h0: torch.Tensor,
        onehot: torch.Tensor | None = None,
        rows: RowGroups | None = None,
    ) -> torch.Tensor:
        """All hidden states ``(T, ..., H)`` over inputs ``x (T, ..., in)`` from ``h0 (..., H)``.

        ``onehot (T, ..., G)``: float assignments of the recurrence, or None (one shared cell, or
        one cell per slot); ``rows``: the same assignment as :class:`RowGroups`, for the input
        projection (default: ``onehot``).

        Equal to calling the cell T times, but forward and backward each run as one tight loop
        (``_GRUSequence``): autograd records one node for the sequence instead of a dozen per step,
        and the recurrent weight gradient is one product over all steps. With several cells the
        input projection ``W_ih x`` runs for all steps at once before the loop; with one shared
        cell it runs inside the loop instead, where each step's gates stay in cache rather than
        going through memory as one T-step tensor (faster on CPU: benchmarks/README.md)."""
        if self.ih.groups == 1:
            ih = (self.ih.weight[0], self.ih.bias[0])
            return _GRUSequence.apply(x, h0, self.hh.weight, self.hh.bias, None, self.hh, *ih)
        gi = self.input_gates(x, onehot if rows is None else rows)
        return _GRUSequence.apply(gi, h0, self.hh.weight, self.hh.bias, onehot, self.hh, None, None)


class _GRUSequence(torch.autograd.Function):
    """The GRU recurrence of ``StackedGRUCell.step_from_gates`` over a whole sequence, with
    a hand-written backward (standard GRU gradients; checked against autograd in the tests).

    ``gi`` holds the input gates ``(T, ..., 3H)``; or, when the shared input projection
    ``w_ih, b_ih`` is given, the cell inputs ``(T, ..., in)``, projected step by step."""

    @staticmethod
    def forward(ctx, gi, h0, weight, bias, onehot, hh, w_ih, b_ih):
        H = h0.shape[-1]
        T = gi.shape[0]
        hs = gi.new_empty((T, *h0.shape))
        rz_all = gi.new_empty((T, *h0.shape[:-1], 2 * H))
        n_all = gi.new_empty((T, *h0.shape))
        hn_all = gi.new_empty((T, *h0.shape))
        if w_ih is not None:  # one shared cell: every product is one addmm on 2-d views
            R = h0.numel() // H
            x_rows = gi.reshape(T, -1, gi.shape[-1])
            g = gi.new_empty((R, 3 * H))  # this step's gates, reused: stays in cache
            # the recurrent bias of r and z rides in the gates' bias
            b_gates = b_ih + torch.cat([bias[0, : 2 * H], bias.new_zeros(H)])
            w_rz, w_n, b_n = weight[0, :, : 2 * H], weight[0, :, 2 * H :], bias[0, 2 * H :]
        h = h0
        for t in range(T):
            if w_ih is None:
                g = gi[t]
                gh = hh(h, None if onehot is None else onehot[t])
                rz = torch.sigmoid(g[..., : 2 * H] + gh[..., : 2 * H], out=rz_all[t])
                hn = hn_all[t].copy_(gh[..., 2 * H :])
            else:
                h2 = h.reshape(R, H)
                torch.addmm(b_gates, x_rows[t], w_ih, out=g)
                torch.addmm(g[:, : 2 * H], h2, w_rz, out=rz_all[t].view(R, 2 * H)).sigmoid_()
                torch.addmm(b_n, h2, w_n, out=hn_all[t].view(R, H))
                rz, hn = rz_all[t], hn_all[t]
            n = torch.tanh(
                torch.addcmul(g[..., 2 * H :].view_as(hn), rz[..., :H], hn), out=n_all[t]
            )
            h = torch.lerp(n, h, rz[..., H:], out=hs[t])  # n + z * (h - n)
        ctx.hh = hh
        inputs = gi if w_ih is not None else None  # only the in-loop projection needs them
        ctx.save_for_backward(h0, hs, rz_all, n_all, hn_all, onehot, inputs, w_ih)
        return hs

    @staticmethod
    def backward(ctx, d_hs):
        h0, hs, rz_all, n_all, hn_all, onehot, x, w_ih = ctx.saved_tensors
        hh = ctx.hh
        H = h0.shape[-1]
        T = hs.shape[0]
        d_gi = rz_all.new_empty((T, *h0.shape[:-1], 3 * H))
        d_gh = torch.empty_like(d_gi)
        dh = torch.zeros_like(h0)
        for t in range(T - 1, -1, -1):
            dh = dh + d_hs[t]
            rz, n, hn = rz_all[t], n_all[t], hn_all[t]
            r, z = rz[..., :H], rz[..., H:]
            h_prev = hs[t - 1] if t > 0 else h0
            d_pre_n = dh * (1 - z) * (1 - n * n)  # through tanh
            # d r, d z, then through both sigmoids
            d_pre_rz = torch.cat([d_pre_n * hn, dh * (h_prev - n)], -1).mul_(rz * (1 - rz))
            # whole contiguous rows written at once (slice writes of the 3H row are slow)
            torch.cat([d_pre_rz, d_pre_n], -1, out=d_gi[t])
            torch.cat([d_pre_rz, d_pre_n * r], -1, out=d_gh[t])
            dh = torch.addcmul(hh.input_grad(d_gh[t], None if onehot is None else onehot[t]), dh, z)
        d_weight = d_bias = None
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
            h_prev_all = torch.cat([h0.unsqueeze(0), hs[:-1]])
            d_weight, d_bias = hh.param_grads(h_prev_all, d_gh, onehot)
        if w_ih is None:
            return d_gi, dh, d_weight, d_bias, None, None, None, None
        # through the shared input projection, one product over all steps each
        d_rows = d_gi.view(-1, 3 * H)
        d_x = (d_rows @ w_ih.T).view(x.shape) if ctx.needs_input_grad[0] else None
        d_w_ih = x.reshape(-1, x.shape[-1]).T @ d_rows if ctx.needs_input_grad[6] else None
        d_b_ih = d_rows.sum(0) if ctx.needs_input_grad[7] else None
        return d_x, dh, d_weight, d_bias, None, None, d_w_ih, d_b_ih
