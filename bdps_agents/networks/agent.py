"""The recurrent agent network: Linear -> ReLU -> GRU -> Linear, with stacked weights.

``groups`` = number of parameter-sharing groups: 1 for full sharing (QMIX), n for no sharing
(one network per agent), k for role networks (BDPS). See :mod:`bdps_agents.networks.stacked`
for how an agent's network is chosen.
"""

from __future__ import annotations

import torch
from torch import nn

from bdps_agents.networks.stacked import RowGroups, StackedGRUCell, StackedLinear


class RecurrentAgent(nn.Module):
    """Per-agent Q-values from per-agent inputs.

    ``step`` advances one time step (acting); ``forward`` unrolls a whole sequence (training).
    Both use the same cell, so acting and training see identical Q-values.
    """

    def __init__(self, input_dim: int, n_actions: int, hidden_dim: int = 64, groups: int = 1):
        super().__init__()
        self.input_dim, self.n_actions, self.hidden_dim, self.groups = (
            input_dim,
            n_actions,
            hidden_dim,
            groups,
        )
        self.fc_in = StackedLinear(groups, input_dim, hidden_dim)
        self.rnn = StackedGRUCell(groups, hidden_dim, hidden_dim)
        self.fc_out = StackedLinear(groups, hidden_dim, n_actions)

    def initial_state(self, *batch_shape: int) -> torch.Tensor:
        return torch.zeros(*batch_shape, self.hidden_dim)

    def step(
        self, x: torch.Tensor, h: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``(..., n, input_dim)``, h ``(..., n, hidden)`` -> (q ``(..., n, A)``, new h)."""
        if index is not None and self.groups > 1:
            index = self.fc_in.onehot(index, x.dtype)  # once for the four layers
        e = torch.relu(self.fc_in(x, index))
        h = self.rnn(e, h, index)
        return self.fc_out(h, index), h

    def forward(
        self,
        x: torch.Tensor,
        index: torch.Tensor | None = None,
        h0: torch.Tensor | None = None,
        return_hidden: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Unroll x ``(B, T, n, input_dim)`` from h0 (zeros) -> q ``(B, T, n, A)``.

        ``index`` is ``(B, T, n)`` (long, or its one-hot float form ``(B, T, n, G)``) when the
        assignment changes over time, else None.
        With ``return_hidden`` also returns the hidden states ``(B, T, n, hidden)``.
        """
        B, _T, n, _ = x.shape
        # time-major inside: each step of the recurrence reads one contiguous (B, n, ...) slice;
        # the narrow input is transposed, not the 3H-wide gates
        x = x.transpose(0, 1).contiguous()
        rows = None  # how the layers applied to all steps at once choose
        if index is not None and self.groups > 1:
            if index.is_floating_point():
                index = index.argmax(-1)
            index = index.transpose(0, 1).contiguous()
            rows = RowGroups.of(index, self.groups)  # once, for the three all-steps layers
        else:
            index = None
        e = torch.relu(self.fc_in(x, rows))
        h = self.initial_state(B, n).to(x) if h0 is None else h0
        hidden = self.rnn.unroll(e, h, index, rows)
        q = self.fc_out(hidden, rows).transpose(0, 1)
        hidden = hidden.transpose(0, 1)
        return (q, hidden) if return_hidden else q
