"""The GRU recurrence over a whole sequence, with one gate arithmetic per direction.

:func:`gru_gates` is the forward arithmetic of one step (PyTorch's gate order r, z, n): acting
(``StackedGRUCell.step_from_gates``) and both unrolls call it. ``StackedGRUCell.unroll``
projects the inputs of all steps at once (``gi = W_ih x + b_ih``, one product); each step then
costs one small product, ``W_hh h`` (one shared cell, one per slot, or G cells side by side for a
per-row assignment), and :func:`gru_gates`. With the fast paths on (``bdps_agents.settings``) the
sequence is one autograd node, :class:`GRUSequence`, whose backward is the arithmetic's one
hand-written gradient: per step one elementwise pass and one product, and the recurrent weight
gradient as one product over all steps (one per cell). With them off, autograd differentiates
the same steps.
The tests check the two against each other and against ``nn.GRU``.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch.autograd.function import once_differentiable


def gru_gates(
    gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One GRU step from its gate pre-activations ``gi = W_ih x + b_ih`` and ``gh = W_hh h +
    b_hh`` (``(..., 3H)``, order r, z, n) and the hidden state ``h (..., H)``:

        r, z = sigmoid(gi_rz + gh_rz);  n = tanh(gi_n + r * gh_n);  h' = (1 - z) * n + z * h

    Returns ``(h', rz, n)`` (``rz``: ``(..., 2H)``, kept for the backward)."""
    H = h.shape[-1]
    rz = torch.sigmoid(gi[..., : 2 * H] + gh[..., : 2 * H])
    n = torch.tanh(torch.addcmul(gi[..., 2 * H :], rz[..., :H], gh[..., 2 * H :]))
    return torch.lerp(n, h, rz[..., H:]), rz, n  # n + z * (h - n)


class StackedLinear(Protocol):
    """What the recurrence reads of its recurrent layer (``stacked.StackedLinear``); named here,
    not imported: stacked imports this."""

    groups: int
    in_dim: int
    out_dim: int
    weight: torch.Tensor  # (G, H, 3H)
    bias: torch.Tensor  # (G, 3H)

    def __call__(self, x: torch.Tensor, index: None) -> torch.Tensor: ...
    def slot_input_grad(self, grad_out: torch.Tensor) -> torch.Tensor: ...
    def slot_param_grads(
        self, x: torch.Tensor, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class RowSplit(Protocol):
    """Rows sorted by group (``stacked.RowGroups``): ``split(x)`` gives each group's rows of
    ``x (..., width)`` in turn, ``(n_g, width)`` each."""

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]: ...


class _Recurrent:
    """``W_hh h + b_hh`` of one step and its gradient, for the three ways ``hh`` is shared.

    One shared cell, or a per-row assignment ``index (T, R)`` (long) of G cells: one product
    with all cells' weights side by side, ``(R, H) @ (H, G * 3H)``, of which each row takes its
    group's gates (one row selection): no per-step spreading of the input, and a fixed product
    shape; backwards the same, ``(R, 3H) @ (3H, G * H)``. One cell per slot (``index`` None, G > 1):
    the layer's own batched product."""

    def __init__(
        self, hh: StackedLinear, index: torch.Tensor | None, rows: RowSplit | None
    ) -> None:
        self.hh, self.G = hh, hh.groups
        self.groups_of_rows = rows  # the same assignment as ``index``, sorted by group
        self.slots = hh.groups > 1 and index is None
        if not self.slots:
            H, out = hh.in_dim, hh.out_dim
            # (G, H, 3H) -> (H, G * 3H): column block g is cell g
            self.weight = hh.weight.permute(1, 0, 2).reshape(H, self.G * out)
            self.bias = hh.bias.reshape(-1)
        self.index = None if index is None else index.reshape(index.shape[0], -1)
        # row r's own block of a (R, G * width) result, as a row of its (R * G, width) view
        self.own_rows = None
        if self.index is not None:
            R = self.index.shape[1]
            self.own_rows = torch.arange(R, device=self.index.device) * self.G + self.index
        self.carry_weight: torch.Tensor | None = None  # built by the first carry()

    def group(self, t: int) -> torch.Tensor | None:
        return None if self.index is None else self.index[t]

    def gates(self, h: torch.Tensor) -> torch.Tensor:
        """Every cell's gates ``(R, G * 3H)``; per slot, the slot's own ``(..., 3H)``."""
        if self.slots:
            return self.hh(h, None)
        return torch.addmm(self.bias, h.reshape(-1, h.shape[-1]), self.weight)

    def select(self, gh: torch.Tensor, t: int, shape: torch.Size) -> torch.Tensor:
        """The row's own cell's gates ``(*shape, 3H)``."""
        out = self.hh.out_dim
        if self.own_rows is not None:
            gh = gh.view(-1, out).index_select(0, self.own_rows[t])
        return gh.reshape(*shape, out)

    def carry(self, d_gh: torch.Tensor) -> torch.Tensor:
        """d loss / d h of a step's product from its ``d_gh (..., 3H)``: ``(R, G * H)``, every
        cell's side by side (a row's own is :meth:`own_carry`), or per slot its own."""
        if self.slots:
            return self.hh.slot_input_grad(d_gh).contiguous()
        if self.carry_weight is None:  # (G, H, 3H) -> (3H, G * H): column block g is W_g^T
            self.carry_weight = self.hh.weight.permute(2, 0, 1).reshape(self.hh.out_dim, -1)
        return d_gh.reshape(-1, self.hh.out_dim) @ self.carry_weight

    def own_carry(self, carry: torch.Tensor, t: int, shape: torch.Size) -> torch.Tensor:
        """The part of :meth:`carry` of step t that each row's own cell at t gives."""
        if self.own_rows is not None:
            carry = carry.view(-1, self.hh.in_dim).index_select(0, self.own_rows[t])
        return carry.reshape(shape)

    def param_grads(
        self, h_prev: torch.Tensor, d_gh: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """d loss / d (weight, bias) of ``hh`` over all steps, in one product."""
        if self.slots:
            return self.hh.slot_param_grads(h_prev, d_gh)
        H, out = self.hh.in_dim, self.hh.out_dim
        rows, grads = h_prev.reshape(-1, H), d_gh.reshape(-1, out)
        if self.groups_of_rows is None:
            return (rows.T @ grads).unsqueeze(0), grads.sum(0, keepdim=True)
        # each cell's gradient from exactly its rows: one product per cell
        pairs = zip(self.groups_of_rows.split(rows), self.groups_of_rows.split(grads), strict=True)
        d_weight = torch.stack([x.T @ g for x, g in pairs])
        d_bias = torch.stack([g.sum(0) for g in self.groups_of_rows.split(grads)])
        return d_weight, d_bias


class GRUSequence(torch.autograd.Function):
    """``apply(gi, h0, weight, bias, index, hh, rows)`` -> hidden states ``(T, ..., H)``.

    ``gi (T, ..., 3H)``: input gates of every step; ``h0 (..., H)``; ``weight``, ``bias``: the
    recurrent layer's parameters (``hh.weight``, ``hh.bias``, passed so that autograd returns
    their gradients); ``index (T, ...)`` long or None: the recurrent layer's assignment (None:
    one shared cell, or one per slot); ``rows``: that assignment sorted by group (``RowSplit``),
    or None without one."""

    @staticmethod
    def forward(ctx, gi, h0, weight, bias, index, hh, rows):
        rec = _Recurrent(hh, index, rows)
        H = h0.shape[-1]
        keep = any(ctx.needs_input_grad)  # what the backward reads (not for a target network)
        hs, rzs, ns, hns = [], [], [], []
        h = h0
        for t in range(gi.shape[0]):
            gh = rec.select(rec.gates(h), t, h0.shape[:-1])
            h, rz, n = gru_gates(gi[t], gh, h)
            hs.append(h)
            if keep:
                rzs.append(rz)
                ns.append(n)
                hns.append(gh[..., 2 * H :])
        hs_all = torch.stack(hs)
        if keep:
            ctx.rec = rec
            ctx.save_for_backward(h0, hs_all, torch.stack(rzs), torch.stack(ns), torch.stack(hns))
        return hs_all

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs):
        h0, hs, rz_all, n_all, hn_all = ctx.saved_tensors
        rec: _Recurrent = ctx.rec
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
            own = rec.own_carry(rec.carry(d_gh[t]), t, h0.shape)
            dh = torch.addcmul(own, dh, z)
        d_weight = d_bias = None
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
            h_prev_all = torch.cat([h0.unsqueeze(0), hs[:-1]])
            d_weight, d_bias = rec.param_grads(h_prev_all, d_gh)
        return d_gi, dh, d_weight, d_bias, None, None, None
