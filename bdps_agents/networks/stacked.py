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
  behind design choices"). It suits few rows: acting (the training recurrence reads all G
  cells' outputs side by side instead: ``gru_sequence``).
* ``index`` given as :class:`RowGroups` (the training unroll's input and output layers, applied
  to every time step at once): rows sorted by group, one product per group on exactly its rows
  (``gemm.grouped_linear``), then back to their places. Each row is multiplied by its own
  group's weights only, so the work is that of one shared layer instead of G times it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

import bdps_agents.networks.gemm as gemm
from bdps_agents.networks.gru_sequence import GRUSequence


def bucket(count: int) -> int:
    """``count`` rounded up to one of a few sizes per power of two (at most 1/16 more, and
    multiples of 32): a group's row count differs in every batch, and each new product shape
    costs oneDNN a kernel build (~1 ms) where a seen one is cached."""
    step = max(32, 1 << max(count.bit_length() - 5, 0))
    return -(-count // step) * step


@dataclass(frozen=True)
class RowGroups:
    """A many-row input's rows sorted by group, for products of each group's rows alone.

    Built once per assignment (:meth:`of`) and shared by every layer that sees the same rows.
    Group g fills ``sizes[g]`` places in turn (its row count rounded up by :func:`bucket`): its
    rows in row order, then padding. ``source[p]`` is the row read at place p (padding reads row
    0; its outputs are dropped, so its gradients are zero); ``place[r]`` is row r's place."""

    source: torch.Tensor  # (sum(sizes),) long
    place: torch.Tensor  # (N,) long
    sizes: tuple[int, ...]
    shape: tuple[int, ...]  # leading dims of the inputs

    @classmethod
    def of(cls, index: torch.Tensor, groups: int) -> RowGroups:
        """``index``: long group per row, any shape (the inputs' leading dims)."""
        flat = index.reshape(-1)
        counts = torch.bincount(flat, minlength=groups)
        sizes = tuple(bucket(c) for c in counts.tolist())  # the one host sync
        starts = torch.tensor((0, *sizes[:-1]), device=flat.device).cumsum(0)
        onehot = nn.functional.one_hot(flat, groups)
        rank = (onehot.cumsum(0) - 1).gather(1, flat[:, None]).squeeze(1)  # place in its group
        place = starts[flat] + rank
        source = flat.new_zeros(sum(sizes)).index_copy_(
            0, place, torch.arange(len(flat), device=flat.device)
        )
        return cls(source, place, sizes, tuple(index.shape))

    def apply(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x (*shape, in)`` through group ``index[r]``'s ``weight (G, in, out)`` and bias."""
        rows = x.reshape(-1, x.shape[-1]).index_select(0, self.source)
        out = gemm.grouped_linear(rows, weight, bias, self.sizes)
        return out.index_select(0, self.place).view(*self.shape, weight.shape[-1])


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
            return gemm.linear(x, self.weight[0], self.bias[0])
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
        return gemm.linear(spread, flat_weight) + gemm.linear(onehot, self.bias)

    # -- hand-written gradients of the one-network-per-slot product (index None, G > 1), for the
    # fused recurrent unroll (GRUSequence) ------------------------------------------------------
    def slot_input_grad(self, grad_out: torch.Tensor) -> torch.Tensor:
        """d loss / d x of ``forward(x)`` (slot g through network g) given d loss / d out."""
        return torch.einsum("...go,gio->...gi", grad_out, self.weight)

    def slot_param_grads(
        self, x: torch.Tensor, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """d loss / d (weight, bias) of ``forward(x)``, summed over all leading dims in one
        product (the fused unroll calls it once for all time steps)."""
        x3 = x.reshape(-1, self.groups, self.in_dim)
        g3 = grad_out.reshape(-1, self.groups, self.out_dim)
        return torch.einsum("rgi,rgo->gio", x3, g3), g3.sum(0)


class StackedGRUCell(nn.Module):
    """``G`` GRU cells (PyTorch gate order r, z, n) with stacked weights.

    The input projection is split from the recurrence (``input_gates`` / ``step_from_gates``).
    A training unroll (:meth:`unroll`) computes ``W_ih x`` for all time steps in one call (with
    G > 1 cells, rows sorted by group: :class:`RowGroups`), leaving only the small ``W_hh h``
    product in the time loop.
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
        index: torch.Tensor | None = None,
        rows: RowGroups | None = None,
    ) -> torch.Tensor:
        """All hidden states ``(T, ..., H)`` over inputs ``x (T, ..., in)`` from ``h0 (..., H)``.

        ``index (T, ...)``: long assignments of the recurrence, or None (one shared cell, or one
        cell per slot); ``rows``: the same assignment as :class:`RowGroups`, for the input
        projection (default: built from ``index``).

        Equal to calling the cell T times, but forward and backward each run as one tight loop
        (:class:`~bdps_agents.networks.gru_sequence.GRUSequence`): the input projection
        ``W_ih x`` runs for all steps at once before the loop, autograd records one node for the
        recurrence instead of a dozen per step, and the recurrent weight gradient is one product
        over all steps."""
        if index is not None and self.ih.groups > 1 and rows is None:
            rows = RowGroups.of(index, self.ih.groups)
        gi = self.input_gates(x, rows)
        index = index if self.ih.groups > 1 else None
        return GRUSequence.apply(gi, h0, self.hh.weight, self.hh.bias, index, self.hh)
