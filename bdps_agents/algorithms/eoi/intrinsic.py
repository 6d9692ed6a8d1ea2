"""EOI's two small networks and their training steps, free of the learner so they can be tested
alone:

* :class:`IdentityClassifier`, P_φ(i | o): observation -> (hidden, hidden) MLP -> softmax over
  the agents; loss = cross-entropy of the true agent + w · entropy of P_φ (the entropy term
  sharpens its predictions);
* :class:`IntrinsicQ`, Q^p([o_i, one-hot i], a): (hidden, hidden) MLP, one output per action;
  one-step TD on r_i = scale · P_φ(i | o_i) (:func:`intrinsic_targets`);
* :func:`soft_update`: target <- (1 − τ) · target + τ · online.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bdps_agents.policy import masked_argmax


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Two ReLU hidden layers of ``hidden`` units (the reference's 64, 64)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, out_dim),
    )


class IdentityClassifier(nn.Module):
    """P_φ(i | o): which of ``n_agents`` agents sees observation ``o``."""

    def __init__(self, obs_dim: int, n_agents: int, hidden: int = 64) -> None:
        super().__init__()
        self.obs_dim, self.n_agents = obs_dim, n_agents
        self.net = mlp(obs_dim, hidden, n_agents)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` -> log P_φ(· | o), ``(..., n)``."""
        return torch.log_softmax(self.net(obs), dim=-1)

    def prob_of(self, obs: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
        """P_φ(agent | obs), ``(...)``."""
        return self(obs).gather(-1, agent.unsqueeze(-1)).squeeze(-1).exp()

    def loss(
        self, obs: torch.Tensor, agent: torch.Tensor, entropy_weight: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-entropy + w · H(P_φ(· | o)), each averaged over the rows; accuracy)."""
        log_p = self(obs)
        ce = -log_p.gather(-1, agent.unsqueeze(-1)).mean()
        entropy = -(log_p.exp() * log_p).sum(-1).mean()
        accuracy = (log_p.argmax(-1) == agent).float().mean()
        return ce + entropy_weight * entropy, accuracy.detach()

    @torch.no_grad()
    def accuracy(self, obs: torch.Tensor, agent: torch.Tensor) -> float:
        return float((self(obs).argmax(-1) == agent).float().mean())


class IntrinsicQ(nn.Module):
    """Q^p([o_i, one-hot i], ·): the intrinsic value of each action of agent i."""

    eye: torch.Tensor  # a (non-persistent) buffer

    def __init__(self, obs_dim: int, n_agents: int, n_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.obs_dim, self.n_agents, self.n_actions = obs_dim, n_agents, n_actions
        self.net = mlp(obs_dim + n_agents, hidden, n_actions)
        self.register_buffer("eye", torch.eye(n_agents), persistent=False)

    def forward(self, obs: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
        """obs ``(..., d)``, agent ids ``(...)`` -> ``(..., A)``."""
        return self.net(torch.cat([obs, self.eye[agent]], dim=-1))

    @torch.no_grad()
    def greedy(self, obs: torch.Tensor, agent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """argmax_a Q^p over the available actions (``mask`` bool ``(..., A)``)."""
        return masked_argmax(self(obs, agent), mask)


@dataclass
class Transitions:
    """The replayed batch's (episode, step, agent) tuples at valid steps, flat: ``obs``,
    ``next_obs`` ``(M, d)``; ``agent``, ``act`` ``(M,)`` long; ``done`` ``(M,)`` float (the
    episode terminated at this step; a truncated one still bootstraps); ``next_mask`` ``(M, A)``
    bool, the actions available at the next step."""

    obs: torch.Tensor
    next_obs: torch.Tensor
    agent: torch.Tensor
    act: torch.Tensor
    done: torch.Tensor
    next_mask: torch.Tensor

    @classmethod
    def of(
        cls,
        obs: torch.Tensor,
        act: torch.Tensor,
        mask: torch.Tensor,
        terminated: torch.Tensor,
        valid: torch.Tensor,
    ) -> Transitions:
        """From episode tensors: obs ``(B, T+1, n, d)``, act ``(B, T, n)``, mask ``(B, T+1, n,
        A)`` (every padded step with some action available), terminated and valid ``(B, T)``."""
        B, T, n = act.shape
        keep = valid[:, :, None].expand(B, T, n)
        return cls(
            obs=obs[:, :-1][keep],
            next_obs=obs[:, 1:][keep],
            agent=torch.arange(n, device=act.device).expand(B, T, n)[keep],
            act=act[keep],
            done=terminated[:, :, None].expand(B, T, n)[keep].float(),
            next_mask=mask[:, 1:][keep],
        )

    def __len__(self) -> int:
        return len(self.agent)

    def __getitem__(self, idx: torch.Tensor) -> Transitions:
        return Transitions(
            self.obs[idx],
            self.next_obs[idx],
            self.agent[idx],
            self.act[idx],
            self.done[idx],
            self.next_mask[idx],
        )


@torch.no_grad()
def intrinsic_targets(
    reward: torch.Tensor,
    done: torch.Tensor,
    next_q_target: torch.Tensor,
    next_mask: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """y = r + γ (1 − done) max_{a' available} Q̄^p(o', a') (a row with no available action
    takes the max over all, so that nothing becomes NaN)."""
    next_mask = next_mask | ~next_mask.any(-1, keepdim=True)
    best = next_q_target.masked_fill(~next_mask, float("-inf")).max(-1).values
    return reward + gamma * (1.0 - done) * best


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 − τ) · target + τ · online, parameter by parameter: the target moves the
    fraction τ of the way to the online network (τ = 1: a copy)."""
    for lagged, current in zip(target.parameters(), online.parameters(), strict=True):
        lagged.mul_(1.0 - tau).add_(current, alpha=tau)
