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
  to every time step at once): rows sorted by group, one product per group on exactly its rows,
  then back to their places. Each row is multiplied by its own group's weights only, so the
  work is that of one shared layer instead of G times it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from bdps_agents.networks.gru_sequence import GRUSequence, gru_gates
from bdps_agents.settings import fast_paths_enabled


@dataclass(frozen=True)
class RowGroups:
    """A many-row input's rows sorted by group, for products of each group's rows alone.

    Built once per assignment (:meth:`of`) and shared by every layer that sees the same rows:
    ``order[p]`` is the row at sorted place p (group 0's rows in row order, then group 1's, ...),
    ``place[r]`` is row r's sorted place, ``sizes[g]`` group g's row count."""

    order: torch.Tensor  # (N,) long
    place: torch.Tensor  # (N,) long
    sizes: tuple[int, ...]
    shape: tuple[int, ...]  # leading dims of the inputs

    @classmethod
    def of(cls, index: torch.Tensor, groups: int) -> RowGroups:
        """``index``: long group per row, any shape (the inputs' leading dims)."""
        flat = index.reshape(-1)
        order = torch.argsort(flat, stable=True)
        place = torch.empty_like(order).index_copy_(
            0, order, torch.arange(len(flat), device=flat.device)
        )
        sizes = tuple(torch.bincount(flat, minlength=groups).tolist())  # the one host sync
        return cls(order, place, sizes, tuple(index.shape))

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each group's rows of ``x (*shape, width)`` in turn: ``(sizes[g], width)`` each."""
        return x.reshape(-1, x.shape[-1]).index_select(0, self.order).split(self.sizes)

    def apply(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x (*shape, in)`` through group ``index[r]``'s ``weight (G, in, out)`` and bias."""
        rows = self.split(x)
        out = torch.cat([F.linear(r, weight[g].T, bias[g]) for g, r in enumerate(rows)])
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
            return F.linear(x, self.weight[0].T, self.bias[0])
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
        return gru_gates(gi, self.hh(h, index), h)[0]

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
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

        Equal to calling the cell T times; the input projection ``W_ih x`` runs for all steps at
        once before the loop. With the fast paths on, the recurrence is one autograd node
        (:class:`~bdps_agents.networks.gru_sequence.GRUSequence`) with a hand-written backward
        instead of a dozen nodes per step; off, autograd differentiates the steps."""
        if index is not None and self.ih.groups > 1 and rows is None:
            rows = RowGroups.of(index, self.ih.groups)
        gi = self.input_gates(x, rows)
        index = index if self.ih.groups > 1 else None
        if fast_paths_enabled():
            by_group = rows if index is not None else None
            hh = self.hh
            return GRUSequence.apply(gi, h0, hh.weight, hh.bias, index, hh, by_group)
        if index is not None:  # one-hot once for all steps (``StackedLinear.onehot``)
            index = self.hh.onehot(index, gi.dtype)
        hs, h = [], h0
        for t in range(gi.shape[0]):
            h = self.step_from_gates(gi[t], h, None if index is None else index[t])
            hs.append(h)
        return torch.stack(hs)
