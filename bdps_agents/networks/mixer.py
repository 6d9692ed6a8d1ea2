"""Mixers: Q_tot from per-agent chosen Q-values and the global state.

Every mixer's forward is ``(agent_qs (..., n), state (..., S), *, actions=None, max_q=None) ->
Q_tot (...)``. A mixer that reads more than Q_i(a_i) and s (QPLEX) sets ``needs_actions = True``;
the learner then also passes the taken actions one-hot ``(..., n, A)`` and each agent's max over
its available actions ``(..., n)`` (:func:`mixer_action_inputs`); the others get neither.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def mixer_action_inputs(
    mixer: nn.Module, q: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The keyword inputs of a mixer that declares ``needs_actions``, else none (so QMIX and VDN
    cost nothing extra): ``actions`` ``(..., n)`` one-hot as ``(..., n, A)``, and ``max_q``, the
    max of ``q`` ``(..., n, A)`` over the available actions (``mask``). ``max_q`` is detached: it
    is a reference point of the advantages, which QPLEX detaches as well (as the reference)."""
    if not getattr(mixer, "needs_actions", False):
        return {}
    q = q.detach()
    return {
        "actions": F.one_hot(actions, q.shape[-1]).to(q.dtype),
        "max_q": q.masked_fill(~mask, float("-inf")).amax(-1),
    }


def check_mixer(mixer: nn.Module, policy: Any, name: str) -> None:
    """``ValueError`` naming ``name`` unless the mixer mixes ``policy.n_agents`` agents and reads
    states of the joint env's size (where the mixer and the policy's spaces say)."""
    n = getattr(mixer, "n_agents", None)
    if n is not None and n != policy.n_agents:
        raise ValueError(
            f"{name}.n_agents ({n}) must equal the policy's n_agents ({policy.n_agents})"
        )
    state_dim = getattr(mixer, "state_dim", None)
    space = getattr(policy.observation_space, "spaces", {}).get("state")
    if state_dim is not None and space is not None and (state_dim,) != tuple(space.shape):
        raise ValueError(
            f"{name}.state_dim ({state_dim}) must match the env's state {tuple(space.shape)}"
        )


class QMixer(nn.Module):
    """QMIX (Rashid et al. 2018): a monotonic mixing network whose weights come from hypernetworks
    of the state. ``|W|`` keeps dQ_tot/dQ_i >= 0, so per-agent greedy actions are jointly greedy.
    """

    needs_actions = False

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

    def forward(
        self,
        agent_qs: torch.Tensor,
        state: torch.Tensor,
        *,
        actions: torch.Tensor | None = None,
        max_q: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """agent_qs ``(..., n)``, state ``(..., S)`` -> Q_tot ``(...)``; ignores the actions.

        Q_tot = elu(Q W1 + b1) W2 + b2, with W1 = |hyper_w1(s)| ``(n, e)``, b1 = hyper_b1(s),
        W2 = |hyper_w2(s)| ``(e, 1)`` and b2 = hyper_b2(s)."""
        lead = agent_qs.shape[:-1]
        w1 = self.hyper_w1(state).abs().view(*lead, self.n_agents, self.embed_dim)
        b1 = self.hyper_b1(state)
        # Q W1 = Σ_i Q_i W1[i, :] as a product and a sum: a batch of (1 x n)(n x e) products
        # costs more on CPU (benchmarks/README.md)
        hidden = F.elu((agent_qs.unsqueeze(-1) * w1).sum(-2) + b1)  # (..., e)
        w2 = self.hyper_w2(state).abs()
        b2 = self.hyper_b2(state).squeeze(-1)
        return (hidden * w2).sum(-1) + b2


class VDNMixer(nn.Module):
    """VDN: Q_tot = sum_i Q_i (the state is ignored). ``n_agents``, if given, is checked
    against the policy by the learner (``check_mixer``)."""

    needs_actions = False

    def __init__(self, n_agents: int | None = None) -> None:
        super().__init__()
        self.n_agents = n_agents

    def forward(
        self,
        agent_qs: torch.Tensor,
        state: torch.Tensor,
        *,
        actions: torch.Tensor | None = None,
        max_q: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return agent_qs.sum(-1)
