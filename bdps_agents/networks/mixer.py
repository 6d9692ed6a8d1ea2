"""Mixers: Q_tot from per-agent chosen Q-values and the global state."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class QMixer(nn.Module):
    """QMIX (Rashid et al. 2018): a monotonic mixing network whose weights come from hypernetworks
    of the state. ``|W|`` keeps dQ_tot/dQ_i >= 0, so per-agent greedy actions are jointly greedy.
    """

    def __init__(self, n_agents: int, state_dim: int, embed_dim: int = 32, hypernet_dim: int = 64):
        super().__init__()
        self.n_agents, self.state_dim, self.embed_dim = n_agents, state_dim, embed_dim
        self.hyper_w1 = nn.Sequential(
            nn.Linear(state_dim, hypernet_dim),
            nn.ReLU(),
            nn.Linear(hypernet_dim, n_agents * embed_dim),
        )
        self.hyper_b1 = nn.Linear(state_dim, embed_dim)
        self.hyper_w2 = nn.Sequential(
            nn.Linear(state_dim, hypernet_dim), nn.ReLU(), nn.Linear(hypernet_dim, embed_dim)
        )
        self.hyper_b2 = nn.Sequential(
            nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1)
        )

    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """agent_qs ``(..., n)``, state ``(..., S)`` -> Q_tot ``(...)``."""
        lead = agent_qs.shape[:-1]
        w1 = self.hyper_w1(state).abs().view(*lead, self.n_agents, self.embed_dim)
        b1 = self.hyper_b1(state)
        hidden = F.elu((agent_qs.unsqueeze(-2) @ w1).squeeze(-2) + b1)
        w2 = self.hyper_w2(state).abs()
        return (hidden * w2).sum(-1) + self.hyper_b2(state).squeeze(-1)


class VDNMixer(nn.Module):
    """VDN: Q_tot = sum_i Q_i (the state is ignored). ``n_agents``, if given, is checked
    against the policy by the learner (``check_mixer``)."""

    def __init__(self, n_agents: int | None = None) -> None:
        super().__init__()
        self.n_agents = n_agents

    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return agent_qs.sum(-1)
