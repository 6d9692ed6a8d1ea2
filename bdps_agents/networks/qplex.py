"""QPLEX (Wang et al., ICLR 2021, "QPLEX: Duplex Dueling Multi-Agent Q-Learning"): a mixer whose
joint greedy action is the agents' greedy actions (IGM) for every value of its weights.

Dueling decomposition, per agent i, of the agents' Q-values (``docs/methods/qplex.md``):

* transformation (Qatten-style): Q'_i = w_i(s)·Q_i(τ_i, a_i) + b_i(s), V'_i = w_i(s)·max_a Q_i
  + b_i(s), A'_i = Q'_i − V'_i ≤ 0, with w_i(s) > 0 the sum over ``heads`` attention heads of
  softmax_i(query_h(s) · key_h,i / √d) and b_i(s) = c(s)/n;
* Q_tot = Σ_i V'_i + Σ_i λ_i(s, a)·A'_i, with λ_i(s, a) > 0 the sum over ``kernels`` heads of
  |k_h(s)|·σ(u_h(s))_i·σ(v_h(s, a))_i (a: the joint action, one-hot).

Since A'_i ≤ 0 with equality at the greedy a_i, λ > 0 and w > 0, Q_tot is largest at the agents'
greedy actions (IGM) and increases with every max_a Q_i.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# keeps w_i and λ_i strictly positive where a softmax or |·| underflows to 0 (as the reference)
_EPS = 1e-10


class QPLEXMixer(nn.Module):
    """The QPLEX mixer (``dmaq_qatten`` of the reference code, with its SMAC settings:
    one-layer λ networks, c(s) on, no weighted heads, no attention regulariser).

    Computed as the reference: Q_tot = Σ_i Q'_i + Σ_i (λ_i − 1)·sg(A'_i) (sg: stop-gradient),
    equal in value to Σ_i V'_i + Σ_i λ_i·A'_i; the agents' Q-values get their gradient through
    Σ_i Q'_i, λ through the advantages.

    :param n_agents: agents mixed.
    :param state_dim: size of the global state.
    :param n_actions: actions per agent (λ reads the joint action one-hot).
    :param embed_dim: size of the attention queries and keys, and of c(s)'s hidden layer.
    :param hypernet_dim: hidden size of the query network.
    :param heads: attention heads of w (the transformation).
    :param kernels: heads of λ.
    """

    needs_actions = True

    def __init__(
        self,
        n_agents: int,
        state_dim: int,
        n_actions: int,
        embed_dim: int = 32,
        hypernet_dim: int = 64,
        heads: int = 4,
        kernels: int = 10,
    ) -> None:
        super().__init__()
        self.n_agents, self.state_dim, self.n_actions = n_agents, state_dim, n_actions
        self.embed_dim, self.heads, self.kernels = embed_dim, heads, kernels
        # transformation: queries from the state, one key per agent and head; the reference
        # computes agent i's key from its own features in a SMAC-layout state, which a generic
        # state lacks, so here the key is learned per agent (a linear map of its one-hot index)
        self.query = nn.Sequential(
            nn.Linear(state_dim, hypernet_dim),
            nn.ReLU(),
            nn.Linear(hypernet_dim, heads * embed_dim, bias=False),
        )
        self.agent_keys = nn.Linear(n_agents, heads * embed_dim, bias=False)
        self.state_bias = nn.Sequential(
            nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1)
        )
        # λ: all kernels in one layer each (the reference's adv_hypernet_layers = 1)
        self.lambda_key = nn.Linear(state_dim, kernels)
        self.lambda_agents = nn.Linear(state_dim, kernels * n_agents)
        self.lambda_action = nn.Linear(state_dim + n_agents * n_actions, kernels * n_agents)

    def transformation(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """w(s) > 0 and b(s), each ``(..., n)``, of Q'_i = w_i·Q_i + b_i."""
        lead = state.shape[:-1]
        query = self.query(state).view(*lead, self.heads, self.embed_dim)
        # agent_keys.weight is (heads·d, n): column i is agent i's key of every head
        keys = self.agent_keys.weight.t().reshape(self.n_agents, self.heads, self.embed_dim)
        logits = torch.einsum("...hd,nhd->...hn", query, keys) / math.sqrt(self.embed_dim)
        w = logits.softmax(-1).sum(-2) + _EPS
        b = self.state_bias(state).expand(*lead, self.n_agents) / self.n_agents
        return w, b

    def lambdas(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """λ(s, a) > 0 ``(..., n)``; ``actions`` one-hot ``(..., n, A)``."""
        lead = state.shape[:-1]
        joint = torch.cat([state, actions.flatten(-2)], -1)
        key = self.lambda_key(state).abs().unsqueeze(-1) + _EPS  # (..., K, 1)
        agents = torch.sigmoid(self.lambda_agents(state)).view(*lead, self.kernels, self.n_agents)
        acted = torch.sigmoid(self.lambda_action(joint)).view(*lead, self.kernels, self.n_agents)
        return (key * agents * acted).sum(-2)

    def forward(
        self,
        agent_qs: torch.Tensor,
        state: torch.Tensor,
        *,
        actions: torch.Tensor | None = None,
        max_q: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """agent_qs Q_i(τ_i, a_i) ``(..., n)``, state ``(..., S)``, ``actions`` a one-hot
        ``(..., n, A)``, ``max_q`` max_a Q_i(τ_i, a) ``(..., n)`` -> Q_tot ``(...)``."""
        if actions is None or max_q is None:
            raise ValueError(
                "QPLEXMixer needs actions= (one-hot, (..., n, A)) and max_q= (max over available "
                "actions, (..., n)); the learner passes them to mixers with needs_actions"
            )
        w, b = self.transformation(state)
        q = w * agent_qs + b
        advantage = (q - (w * max_q + b)).detach()
        lam = self.lambdas(state, actions)
        return q.sum(-1) + ((lam - 1.0) * advantage).sum(-1)
