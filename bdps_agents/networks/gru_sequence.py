"""The GRU recurrence over a whole sequence as one autograd node, with a hand-written backward.

``StackedGRUCell.unroll`` projects the inputs of all steps at once (``gi = W_ih x + b_ih``, one
product) and hands them here. Each step then costs one small product, ``W_hh h`` (one shared
cell, one per slot, or G cells side by side for a per-row assignment), and the step's
gate arithmetic: one pass of the compiled kernel (:mod:`bdps_agents.networks.native`) where it
built, else the same arithmetic as PyTorch operations. The backward mirrors it: per step one
kernel pass and one product, and the recurrent weight gradient as one product over all steps.
Standard GRU gradients (gate order r, z, n); the tests check both paths against autograd.
"""

from __future__ import annotations

from typing import Protocol, cast

import torch
from torch import nn

import bdps_agents.networks.gemm as gemm
import bdps_agents.networks.native as native


class StackedLinear(Protocol):
    """What the recurrence reads of its recurrent layer (``stacked.StackedLinear``, or an
    ``nn.GRU``'s weights seen as one cell); named here, not imported: stacked imports this."""

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


class _Recurrent:
    """``W_hh h + b_hh`` of one step and its gradient, for the three ways ``hh`` is shared.

    One shared cell, or a per-row assignment ``index (T, R)`` (long) of G cells: one product
    with all cells' weights side by side, ``(R, H) @ (H, G * 3H)``, whose row r's group the
    kernel (or a gather) reads: no per-step spreading of the input, and a fixed product shape;
    backwards the same, ``(R, 3H) @ (3H, G * H)``. One cell per slot (``index`` None, G > 1):
    the layer's own batched product."""

    def __init__(self, hh: StackedLinear, index: torch.Tensor | None) -> None:
        self.hh, self.G = hh, hh.groups
        self.slots = hh.groups > 1 and index is None
        if not self.slots:
            H, out = hh.in_dim, hh.out_dim
            # (G, H, 3H) -> (H, G * 3H): column block g is cell g
            self.weight = hh.weight.permute(1, 0, 2).reshape(H, self.G * out)
            self.bias = hh.bias.reshape(-1)
        self.index = None if index is None else index.reshape(index.shape[0], -1).contiguous()
        self.carry_weight: torch.Tensor | None = None  # built by the first carry()

    def group(self, t: int) -> torch.Tensor | None:
        return None if self.index is None else self.index[t]

    def gates(self, h: torch.Tensor) -> torch.Tensor:
        """Every cell's gates ``(R, G * 3H)``; per slot, the slot's own ``(..., 3H)``."""
        if self.slots:
            return self.hh(h, None)
        return gemm.addmm(self.bias, h.reshape(-1, h.shape[-1]), self.weight)

    def select(self, gh: torch.Tensor, t: int, shape: torch.Size) -> torch.Tensor:
        """The row's own cell's gates ``(*shape, 3H)`` (the PyTorch path)."""
        out = self.hh.out_dim
        if self.index is not None:
            rows = gh.view(-1, self.G, out)
            gh = rows.gather(1, self.index[t].view(-1, 1, 1).expand(-1, 1, out))
        return gh.reshape(*shape, out)

    def carry(self, d_gh: torch.Tensor) -> torch.Tensor:
        """d loss / d h of a step's product from its ``d_gh (..., 3H)``: ``(R, G * H)``, every
        cell's side by side (a row's own is :meth:`own_carry`), or per slot its own."""
        if self.slots:
            return self.hh.slot_input_grad(d_gh).contiguous()
        if self.carry_weight is None:  # (G, H, 3H) -> (3H, G * H): column block g is W_g^T
            self.carry_weight = self.hh.weight.permute(2, 0, 1).reshape(self.hh.out_dim, -1)
        return gemm.mm(d_gh.reshape(-1, self.hh.out_dim), self.carry_weight)

    def own_carry(self, carry: torch.Tensor, t: int, shape: torch.Size) -> torch.Tensor:
        """The part of :meth:`carry` of step t that each row's own cell at t gives."""
        if self.index is not None:
            H = self.hh.in_dim
            slot = self.index[t].view(-1, 1, 1).expand(-1, 1, H)
            carry = carry.view(-1, self.G, H).gather(1, slot)
        return carry.reshape(shape)

    def param_grads(
        self, h_prev: torch.Tensor, d_gh: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """d loss / d (weight, bias) of ``hh`` over all steps, in one product."""
        if self.slots:
            return self.hh.slot_param_grads(h_prev, d_gh)
        H, out = self.hh.in_dim, self.hh.out_dim
        rows, grads = h_prev.reshape(-1, H), d_gh.reshape(-1, out)
        if self.index is None:
            return gemm.mm(rows.T, grads).unsqueeze(0), grads.sum(0, keepdim=True)
        # each row's input in its cell's block (zeros elsewhere): one product for all cells
        flat = self.index.reshape(-1)
        spread = rows.new_zeros(len(rows), self.G, H)
        spread.scatter_(1, flat.view(-1, 1, 1).expand(-1, 1, H), rows.unsqueeze(1))
        d_weight = gemm.mm(spread.view(len(rows), -1).T, grads).view(self.G, H, out)
        d_bias = grads.new_zeros(self.G, out).index_add_(0, flat, grads)
        return d_weight, d_bias


class GRUSequence(torch.autograd.Function):
    """``apply(gi, h0, weight, bias, index, hh)`` -> hidden states ``(T, ..., H)``.

    ``gi (T, ..., 3H)``: input gates of every step; ``h0 (..., H)``; ``weight``, ``bias``: the
    recurrent layer's parameters (``hh.weight``, ``hh.bias``, passed so that autograd returns
    their gradients); ``index (T, ...)`` long or None: the recurrent layer's assignment (None:
    one shared cell, or one per slot)."""

    @staticmethod
    def forward(ctx, gi, h0, weight, bias, index, hh):
        H = h0.shape[-1]
        T = gi.shape[0]
        gi, h0 = gi.contiguous(), h0.contiguous()
        rec = _Recurrent(hh, index)
        hs = gi.new_empty((T, *h0.shape))
        rz_all = gi.new_empty((T, *h0.shape[:-1], 2 * H))
        n_all = torch.empty_like(hs)
        hn_all = torch.empty_like(hs)
        kernels = native.gru_kernels()
        if kernels is not None and not kernels.usable(gi, h0):
            kernels = None
        h = h0
        for t in range(T):
            gh = rec.gates(h)
            if kernels is not None and kernels.usable(gh):
                kernels.forward(rec.group(t), gi[t], gh, h, rz_all[t], n_all[t], hn_all[t], hs[t])
            else:
                g, gh = gi[t], rec.select(gh, t, h0.shape[:-1])
                rz = torch.add(g[..., : 2 * H], gh[..., : 2 * H], out=rz_all[t]).sigmoid_()
                hn = hn_all[t].copy_(gh[..., 2 * H :])
                n = torch.tanh(torch.addcmul(g[..., 2 * H :], rz[..., :H], hn), out=n_all[t])
                torch.lerp(n, h, rz[..., H:], out=hs[t])  # n + z * (h - n)
            h = hs[t]
        ctx.rec = rec
        ctx.save_for_backward(h0, hs, rz_all, n_all, hn_all)
        return hs

    @staticmethod
    def backward(ctx, d_hs):
        h0, hs, rz_all, n_all, hn_all = ctx.saved_tensors
        rec: _Recurrent = ctx.rec
        H = h0.shape[-1]
        T = hs.shape[0]
        d_hs = d_hs.contiguous()
        d_gi = rz_all.new_empty((T, *h0.shape[:-1], 3 * H))
        d_gh = torch.empty_like(d_gi)
        kernels = native.gru_kernels()
        if kernels is not None and kernels.usable(d_hs):
            zeros = torch.zeros_like(h0)
            carry, carry_group = zeros, None  # nothing flows back from after the last step
            dh_now, dh_next = torch.empty_like(h0), zeros  # two buffers, swapped every step
            for t in range(T - 1, -1, -1):
                kernels.backward(
                    carry_group,
                    carry,
                    d_hs[t],
                    dh_next,
                    rz_all[t] if t == T - 1 else rz_all[t + 1],  # times zeros after the last
                    rz_all[t],
                    n_all[t],
                    hn_all[t],
                    hs[t - 1] if t > 0 else h0,
                    dh_now,
                    d_gi[t],
                    d_gh[t],
                )
                carry, carry_group = rec.carry(d_gh[t]), rec.group(t)
                spare = torch.empty_like(h0) if t == T - 1 else dh_next  # not the zeros
                dh_now, dh_next = spare, dh_now
            dh = torch.addcmul(rec.own_carry(carry, 0, h0.shape), dh_next, rz_all[0][..., H:])
        else:
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
        return d_gi, dh, d_weight, d_bias, None, None


class _TorchGRUWeights:
    """A one-layer ``nn.GRU``'s recurrent weights as :class:`_Recurrent` reads a one-cell
    ``StackedLinear``: ``weight (1, H, 3H)`` and ``bias (1, 3H)``, views of the module's own."""

    groups = 1

    def __init__(self, weight_hh: torch.Tensor, bias_hh: torch.Tensor, hidden: int) -> None:
        self.weight = weight_hh.T.unsqueeze(0)
        self.bias = bias_hh.unsqueeze(0)
        self.in_dim, self.out_dim = hidden, 3 * hidden


def torch_gru_unroll(gru: nn.GRU, x: torch.Tensor) -> torch.Tensor:
    """``gru(x)``'s hidden states ``(T, N, H)`` for ``x (N, T, in)`` from zeros, through
    :class:`GRUSequence` (the same arithmetic as ``nn.GRU``; one layer, batch first, biases)."""
    if gru.num_layers != 1 or gru.bidirectional or not gru.batch_first or not gru.bias:
        raise ValueError("torch_gru_unroll takes a one-layer, one-way, batch-first GRU with biases")
    weights = {name: cast(torch.Tensor, getattr(gru, name)) for name in gru._flat_weights_names}
    gi = gemm.linear(x.transpose(0, 1), weights["weight_ih_l0"].T, weights["bias_ih_l0"])
    h0 = x.new_zeros((x.shape[0], gru.hidden_size))
    cell = _TorchGRUWeights(weights["weight_hh_l0"], weights["bias_hh_l0"], gru.hidden_size)
    return GRUSequence.apply(gi, h0, cell.weight, cell.bias, None, cell)
