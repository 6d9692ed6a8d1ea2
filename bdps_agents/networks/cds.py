"""CDS's networks (Li et al., NeurIPS 2021, "Celebrating Diversity in Shared Multi-Agent RL"):
the agent with a shared and a per-agent Q head, the next-observation predictors, and the two
terms of the intrinsic reward. How they are trained: ``bdps_agents.algorithms.cds``.

* :class:`CDSAgent`: shared fc -> GRU -> shared head, plus one linear head per agent:
  Q_i = Q_shared(h_i) + Q_local_i(h_i). The local heads are one stacked layer
  (``StackedLinear(n, H, A)``) whose slot i is agent i's head: no loop over agents.
* :class:`NextObsPredictor`: a 3-layer MLP predicting o'_i from (h_i, o_i, a_i) [, id_i];
  "log probability" = −Σ (prediction − o'_i)², a unit-variance Gaussian up to a constant.
* :func:`observation_term` (β1 · (log q − log p)) and :func:`policy_divergence`
  (KL(softmax(c·Q_i) ‖ mean_j softmax(c·Q_j)), c = β1 in the reference), each per agent-step.
"""

from __future__ import annotations

import torch
from torch import nn

from bdps_agents.networks.agent import RecurrentAgent
from bdps_agents.networks.stacked import StackedLinear


class CDSAgent(RecurrentAgent):
    """The shared recurrent agent (``groups=1``) plus ``n_agents`` local linear heads.

    ``step`` and ``forward`` return the summed Q (what acting and the TD loss use);
    ``forward(..., parts=True)`` also returns the local heads' Q and the hidden states.
    """

    def __init__(self, input_dim: int, n_actions: int, hidden_dim: int, n_agents: int) -> None:
        super().__init__(input_dim, n_actions, hidden_dim, groups=1)
        self.n_agents = n_agents
        self.local = StackedLinear(n_agents, hidden_dim, n_actions)

    def step(
        self, x: torch.Tensor, h: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``(..., n, input_dim)``, h ``(..., n, H)`` -> (q ``(..., n, A)``, new h)."""
        q, h = super().step(x, h)
        return q + self.local(h), h

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, index: torch.Tensor | None = None, parts: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unroll x ``(B, T, n, in)`` from zero states -> q ``(B, T, n, A)``; with ``parts``
        (q, Q_local ``(B, T, n, A)``, hidden ``(B, T, n, H)``)."""
        shared, hidden = super().forward(x, return_hidden=True)
        local = self.local(hidden)  # slot i (dim -2) through head i: one einsum
        q = shared + local
        return (q, local, hidden) if parts else q


class NextObsPredictor(nn.Module):
    """o'_i ≈ MLP(h_i, o_i, a_i [, id_i]): Linear -> ReLU -> Linear -> ReLU -> Linear.

    With ``n_agents`` (the id-conditioned q), the one-hot id enters the first layer with the
    other inputs and again the second layer, as the reference's ``Predict_Network1_combine``.
    Xavier-uniform weights and zero biases, as the reference.
    """

    def __init__(
        self, in_dim: int, obs_dim: int, hidden_dim: int = 128, n_agents: int | None = None
    ) -> None:
        super().__init__()
        self.n_id = n_agents or 0
        self.fc1 = nn.Linear(in_dim + self.n_id, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim + self.n_id, hidden_dim)
        self.out = nn.Linear(hidden_dim, obs_dim)
        for layer in (self.fc1, self.fc2, self.out):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, agent_id: torch.Tensor | None = None) -> torch.Tensor:
        """x ``(..., in_dim)``; ``agent_id`` ``(..., n)`` one-hot when built with ``n_agents``."""
        if self.n_id:
            if agent_id is None:
                raise ValueError("this predictor is conditioned on the agent id: pass agent_id")
            x = torch.cat([x, agent_id], -1)
        e = torch.relu(self.fc1(x))
        if self.n_id:
            e = torch.cat([e, agent_id], -1)  # type: ignore[list-item]
        return self.out(torch.relu(self.fc2(e)))

    def log_prob(
        self, x: torch.Tensor, next_obs: torch.Tensor, agent_id: torch.Tensor | None = None
    ) -> torch.Tensor:
        """−Σ_d (prediction − o')², ``(...)``: the reference's "log probability"."""
        return -(self(x, agent_id) - next_obs).pow(2).sum(-1)


class CDSPredictors(nn.Module):
    """The pair of next-observation predictors: ``with_id`` (q, sees the agent id) and
    ``without_id`` (p). Inputs: [h_i, o_i, onehot(a_i)]."""

    eye: torch.Tensor  # a (non-persistent) buffer

    def __init__(
        self, hidden_dim: int, obs_dim: int, n_actions: int, n_agents: int, width: int = 128
    ) -> None:
        super().__init__()
        self.n_agents, self.n_actions = n_agents, n_actions
        in_dim = hidden_dim + obs_dim + n_actions
        self.with_id = NextObsPredictor(in_dim, obs_dim, width, n_agents)
        self.without_id = NextObsPredictor(in_dim, obs_dim, width)
        self.register_buffer("eye", torch.eye(n_agents), persistent=False)

    def inputs(
        self, hidden: torch.Tensor, obs: torch.Tensor, act: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden, obs ``(..., n, ·)``, act ``(..., n)`` long -> ([h, o, a] ``(..., n, in)``,
        one-hot ids ``(..., n, n)``)."""
        onehot = nn.functional.one_hot(act, self.n_actions).to(obs.dtype)
        ids = self.eye.expand(*obs.shape[:-1], self.n_agents)
        return torch.cat([hidden, obs, onehot], -1), ids

    def forward(
        self, x: torch.Tensor, ids: torch.Tensor, next_obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log q(o' | ·, id), log p(o' | ·)), each ``(...)`` (a forward, so that the target
        copy, a lagged-network wrapper that offers nothing else, computes it too)."""
        return self.with_id.log_prob(x, next_obs, ids), self.without_id.log_prob(x, next_obs)


def observation_term(
    log_q: torch.Tensor, log_p: torch.Tensor, beta1: float, reference: bool = False
) -> torch.Tensor:
    """β1 · (log q − log p): how much better agent i's next observation is predicted knowing
    its id. ``reference``: β1 · log q − log p, as the reference code computes it (not zero for
    identical agents unless β1 = 1)."""
    return beta1 * log_q - log_p if reference else beta1 * (log_q - log_p)


def policy_divergence(
    q: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    reference: bool = False,
) -> torch.Tensor:
    """KL(π_i ‖ mean_j π_j) per agent, ``(..., n)``, with π_i = softmax(c·Q_i) over agent i's
    available actions (``mask`` ``(..., n, A)`` bool; None: all actions), c = ``scale``.

    ``reference``: the reference code's form, KL(softmax(c·Q_i) ‖ mean_j softmax(Q_j)) over all
    actions (the mean unscaled; not zero for identical agents unless c = 1)."""
    if reference:
        pi = torch.softmax(scale * q, -1)
        mean = torch.softmax(q, -1).mean(-2, keepdim=True)
    else:
        logits = scale * q
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        pi = torch.softmax(logits, -1)
        mean = pi.mean(-2, keepdim=True)
    # xlogy: 0 · log 0 = 0 at unavailable actions
    kl = torch.special.xlogy(pi, pi) - torch.special.xlogy(pi, mean.expand_as(pi))
    return kl.sum(-1).clamp_min(0.0)
