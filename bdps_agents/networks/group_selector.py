"""The group selector V (paper Sec. 3.2): roles -> MLP -> multi-head GAT -> GRU -> group Q-values.

Groups are chosen by a separate Q-learning task over the agents' current roles; the GAT lets an
agent's group value depend on which roles the other living agents hold (Eq. 4, 5), with one
attention head per virtual role (the paper ties heads to k). Sizes follow App. F: GAT output 128,
GRU hidden 64.

Choices the paper leaves open:

* neighbourhood: every alive agent, self included (as the paper says); dead agents get no
  attention and attend only to themselves, so every softmax row has a finite entry and no NaN
  appears; their outputs are zeroed and their inputs ignored;
* sigma in Eq. 5 is ELU (the GAT paper's choice for hidden layers);
* when ``out_dim`` is not divisible by ``heads`` (128 with 3 or 5 roles), heads use
  ``ceil(out_dim / heads)`` features and a Linear maps the concatenation to ``out_dim``;
* the GRU advances one step per group decision (every T_V env steps), not per env step;
* optional per-agent features (``agent_feature_dim > 0``): each agent's one-hot role is
  concatenated with features of its own (BDPS: its one-hot agent id, or its role network's
  hidden state h^U, detached) before the MLP. With roles alone, agents that hold the same role
  get the same group values and so the same greedy group (docs/algorithm.md).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class GraphAttention(nn.Module):
    """Multi-head graph attention over the alive agents (Eq. 4, 5), all heads in one einsum.

    ``e_ij = LeakyReLU(a^T [W x_i || W x_j])`` is computed as ``a_dst . W x_i + a_src . W x_j``
    (the two halves of a), which is the same product without building the n x n pair tensor.
    Output: the ELU of each head's attention-weighted sum, concatenated over heads; if
    ``heads * head_dim != out_dim`` a final Linear brings it to exactly ``out_dim``.
    """

    def __init__(self, in_dim: int, out_dim: int, heads: int, negative_slope: float = 0.2):
        super().__init__()
        if heads < 1 or out_dim < 1:
            raise ValueError(f"heads and out_dim must be >= 1, got {heads}, {out_dim}")
        self.in_dim, self.out_dim, self.heads = in_dim, out_dim, heads
        self.head_dim = math.ceil(out_dim / heads)
        self.negative_slope = negative_slope
        self.weight = nn.Parameter(torch.empty(heads, in_dim, self.head_dim))  # W^k
        self.att_dst = nn.Parameter(torch.empty(heads, self.head_dim))  # a^k, half for x_i
        self.att_src = nn.Parameter(torch.empty(heads, self.head_dim))  # a^k, half for x_j
        concat = heads * self.head_dim
        self.proj = nn.Linear(concat, out_dim) if concat != out_dim else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Glorot, as in the GAT reference implementation
        gain = nn.init.calculate_gain("relu")
        bound = gain * math.sqrt(6.0 / (self.in_dim + self.head_dim))
        nn.init.uniform_(self.weight, -bound, bound)
        bound = gain * math.sqrt(6.0 / (2 * self.head_dim + 1))
        nn.init.uniform_(self.att_dst, -bound, bound)
        nn.init.uniform_(self.att_src, -bound, bound)

    def forward(self, x: torch.Tensor, alive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``(B, n, in_dim)``, alive ``(B, n)`` bool -> (out ``(B, n, out_dim)``,
        attention ``(B, heads, n, n)``, rows = receiving agent i, columns = source j)."""
        n = x.shape[-2]
        alive = alive.bool()
        x = torch.where(alive.unsqueeze(-1), x, torch.zeros_like(x))  # dead inputs ignored
        wx = torch.einsum("bni,kio->bkno", x, self.weight)  # (B, heads, n, head_dim)
        s_dst = torch.einsum("bkno,ko->bkn", wx, self.att_dst)
        s_src = torch.einsum("bkno,ko->bkn", wx, self.att_src)
        e = F.leaky_relu(s_dst.unsqueeze(-1) + s_src.unsqueeze(-2), self.negative_slope)
        # i attends to j if both are alive, and always to itself (a dead row then sums to 1)
        eye = torch.eye(n, dtype=torch.bool, device=x.device)
        mask = (alive.unsqueeze(-1) & alive.unsqueeze(-2)) | eye  # (B, n, n)
        e = e.masked_fill(~mask.unsqueeze(1), float("-inf"))
        attention = torch.softmax(e, dim=-1)
        out = F.elu(attention @ wx)  # (B, heads, n, head_dim)
        out = out.transpose(1, 2).flatten(2)  # (B, n, heads * head_dim), heads concatenated
        if self.proj is not None:
            out = self.proj(out)
        return out * alive.unsqueeze(-1).to(out.dtype), attention


class GroupOutput(NamedTuple):
    """One group decision for every agent."""

    q: torch.Tensor  # (B, n, n_groups) per-agent group Q-values
    h: torch.Tensor  # (B, n, hidden_dim) new GRU state, held by the caller
    attention: torch.Tensor  # (B, heads, n, n)


class GroupSelector(nn.Module):
    """Roles ``(B, n)`` [and per-agent features ``(B, n, agent_feature_dim)``] -> per-agent group
    Q-values; GAT heads = n_roles (paper Sec. 3.2)."""

    def __init__(
        self,
        n_roles: int,
        n_groups: int,
        embed_dim: int = 64,
        gat_dim: int = 128,
        hidden_dim: int = 64,
        agent_feature_dim: int = 0,
    ) -> None:
        super().__init__()
        if agent_feature_dim < 0:
            raise ValueError(f"agent_feature_dim must be >= 0, got {agent_feature_dim}")
        self.n_roles, self.n_groups, self.hidden_dim = n_roles, n_groups, hidden_dim
        self.agent_feature_dim = agent_feature_dim
        self.embed = nn.Sequential(nn.Linear(n_roles + agent_feature_dim, embed_dim), nn.ReLU())
        self.gat = GraphAttention(embed_dim, gat_dim, heads=n_roles)
        self.rnn = nn.GRUCell(gat_dim, hidden_dim)
        self.head = nn.Linear(hidden_dim, n_groups)

    def initial_state(self, *batch_shape: int) -> torch.Tensor:
        return torch.zeros(*batch_shape, self.hidden_dim)

    def _attend(
        self, roles: torch.Tensor, alive: torch.Tensor, features: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """roles, alive ``(B, n)``, features ``(B, n, agent_feature_dim)`` or None -> GAT features
        ``(B, n, gat_dim)`` and attention."""
        alive = alive.bool()
        # a dead agent's role may be any placeholder (e.g. -1); it is ignored by the GAT anyway
        roles = torch.where(alive, roles, torch.zeros_like(roles))
        x = F.one_hot(roles, self.n_roles).to(self.head.weight.dtype)
        if self.agent_feature_dim:
            if features is None or features.shape[-1] != self.agent_feature_dim:
                got = None if features is None else tuple(features.shape)
                raise ValueError(
                    "this group selector reads per-agent features of size "
                    f"{self.agent_feature_dim}; got {got}"
                )
            x = torch.cat([x, features.to(x.dtype)], -1)
        elif features is not None:
            raise ValueError(
                "this group selector was built without per-agent features (agent_feature_dim=0)"
            )
        return self.gat(self.embed(x), alive)

    def forward(
        self,
        roles: torch.Tensor,
        alive: torch.Tensor,
        h: torch.Tensor,
        features: torch.Tensor | None = None,
    ) -> GroupOutput:
        """One group decision: roles, alive ``(B, n)``, h ``(B, n, hidden)``, features
        ``(B, n, agent_feature_dim)`` (only with ``agent_feature_dim > 0``) -> GroupOutput."""
        feat, attention = self._attend(roles, alive, features)
        B, n, _ = feat.shape
        h = self.rnn(feat.reshape(B * n, -1), h.reshape(B * n, -1)).view(B, n, -1)
        return GroupOutput(self.head(h), h, attention)

    def unroll(
        self,
        roles: torch.Tensor,
        alive: torch.Tensor,
        h0: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decisions j = 0..J-1 from h0 (zeros): roles, alive ``(B, J, n)``, features
        ``(B, J, n, agent_feature_dim)`` -> (q ``(B, J, n, n_groups)``,
        attention ``(B, J, heads, n, n)``)."""
        B, J, n = roles.shape
        flat = None if features is None else features.reshape(B * J, n, -1)
        feat, attention = self._attend(roles.reshape(B * J, n), alive.reshape(B * J, n), flat)
        feat = feat.view(B, J, n, -1)
        h = self.initial_state(B * n).to(feat) if h0 is None else h0.reshape(B * n, -1)
        hs = []
        for j in range(J):  # only the recurrence is sequential
            h = self.rnn(feat[:, j].reshape(B * n, -1), h)
            hs.append(h.view(B, n, -1))
        q = self.head(torch.stack(hs, dim=1))
        return q, attention.view(B, J, *attention.shape[1:])

    @staticmethod
    def epsilon_greedy(q: torch.Tensor, eps: float, rng: np.random.Generator) -> torch.Tensor:
        """Per row of q ``(..., m)``: argmax w.p. 1 - eps, else a uniform group -> ``(...)``."""
        greedy = q.argmax(-1)
        shape = tuple(greedy.shape)
        explore = torch.as_tensor(rng.random(shape) < eps, device=q.device)
        random = torch.as_tensor(rng.integers(0, q.shape[-1], size=shape)).to(greedy)
        return torch.where(explore, random, greedy)
