"""RODE's networks (Wang et al., ICLR 2021): action representations, the role-conditioned agent
and the role selector. How they are trained: ``bdps_agents.algorithms.rode``.

* :class:`ActionRepresentation`: an action encoder one-hot a -> z_a and a forward model that,
  from an agent's observation, the other agents' actions and z_a, predicts its next observation
  and the reward; actions with similar effects get nearby z_a.
* :class:`RODEAgent`: a shared recurrent trunk (fc -> GRU) and one linear head per role giving a
  key; Q_i(a) = key_ρ(h_i) · z_a. Role heads are stacked networks indexed by role.
* :class:`RODERoleSelector`: its own GRU over the agent's inputs, then h -> 2h -> d gives x;
  Q(ρ) = x · z_ρ with z_ρ the mean z_a of role ρ's actions.
"""

from __future__ import annotations

import torch
from torch import nn

from bdps_agents.networks.stacked import RowGroups, StackedGRUCell, StackedLinear


class ActionRepresentation(nn.Module):
    """z_a = encoder(onehot(a)); the forward model predicts (o'_i, r) from [o_i, others' actions]
    and z_{a_i}."""

    others: torch.Tensor  # a (non-persistent) buffer

    def __init__(
        self, n_agents: int, obs_dim: int, n_actions: int, embed_dim: int = 20, hidden_dim: int = 32
    ) -> None:
        super().__init__()
        self.n_agents, self.obs_dim, self.n_actions = n_agents, obs_dim, n_actions
        self.embed_dim = embed_dim
        self.encoder = nn.Sequential(
            nn.Linear(n_actions, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, embed_dim)
        )
        context = obs_dim + (n_agents - 1) * n_actions
        self.context = nn.Sequential(nn.Linear(context, hidden_dim), nn.ReLU())
        self.next_obs = nn.Sequential(
            nn.Linear(hidden_dim + embed_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, obs_dim)
        )
        self.reward = nn.Sequential(
            nn.Linear(hidden_dim + embed_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1)
        )
        # others[i] = the agents other than i, in order: gathers their actions for agent i
        ids = torch.arange(n_agents)
        others = ids.repeat(n_agents, 1)[ids[:, None] != ids[None, :]].view(n_agents, -1)
        self.register_buffer("others", others, persistent=False)

    def embeddings(self) -> torch.Tensor:
        """z_a of every action, ``(A, d)``."""
        eye = torch.eye(self.n_actions, device=next(self.encoder.parameters()).device)
        return self.encoder(eye)

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs`` ``(..., n, d)``, ``act`` ``(..., n)`` long -> (next obs ``(..., n, d)``,
        reward ``(..., n)``), one prediction per agent."""
        onehot = nn.functional.one_hot(act, self.n_actions).to(obs.dtype)
        others = onehot[..., self.others, :].flatten(-2)  # (..., n, (n-1)·A)
        ctx = self.context(torch.cat([obs, others], -1))
        z = self.encoder(onehot)
        joint = torch.cat([ctx, z], -1)
        return self.next_obs(joint), self.reward(joint).squeeze(-1)

    def loss(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        next_obs: torch.Tensor,
        rew: torch.Tensor,
        weight: torch.Tensor,
        reward_weight: float = 10.0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean L2 norm of the next-observation error + ``reward_weight`` · reward MSE over the
        agent-steps where ``weight`` ``(..., n)`` is 1; ``rew`` ``(...)`` is the team reward.
        Returns (total, observation term, reward term)."""
        pred_obs, pred_rew = self.predict(obs, act)
        w = weight.float()
        total_w = w.sum().clamp_min(1.0)
        # +1e-8: the norm's gradient is undefined at an exact zero error
        obs_err = ((pred_obs - next_obs).pow(2).sum(-1) + 1e-8).sqrt()
        obs_term = (obs_err * w).sum() / total_w
        rew_term = ((pred_rew - rew.unsqueeze(-1)).pow(2) * w).sum() / total_w
        return obs_term + reward_weight * rew_term, obs_term, rew_term


def _recurrent_trunk(input_dim: int, hidden_dim: int) -> tuple[StackedLinear, StackedGRUCell]:
    return StackedLinear(1, input_dim, hidden_dim), StackedGRUCell(1, hidden_dim, hidden_dim)


def _unroll(fc: StackedLinear, rnn: StackedGRUCell, x: torch.Tensor) -> torch.Tensor:
    """Hidden states ``(B, T, n, H)`` of inputs ``(B, T, n, in)`` from zero states."""
    B, _T, n, _ = x.shape
    e = torch.relu(fc(x.transpose(0, 1).contiguous()))  # time-major inside, as RecurrentAgent
    h0 = e.new_zeros(B, n, rnn.hidden_dim)
    return rnn.unroll(e, h0).transpose(0, 1)


class RODEAgent(nn.Module):
    """Q_i(a) = key_{ρ_i}(h_i) · z_a: a shared trunk and one key head per role (``groups``)."""

    def __init__(
        self, input_dim: int, n_actions: int, hidden_dim: int, n_roles: int, embed_dim: int
    ) -> None:
        super().__init__()
        self.input_dim, self.n_actions, self.hidden_dim = input_dim, n_actions, hidden_dim
        self.groups, self.embed_dim = n_roles, embed_dim
        self.fc_in, self.rnn = _recurrent_trunk(input_dim, hidden_dim)
        self.heads = StackedLinear(n_roles, hidden_dim, embed_dim)

    def step(
        self, x: torch.Tensor, h: torch.Tensor, role: torch.Tensor, action_embed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One acting step: x ``(..., n, in)``, h ``(..., n, H)``, role ``(..., n)`` long ->
        (q ``(..., n, A)``, new h)."""
        h = self.rnn(torch.relu(self.fc_in(x)), h)
        return self.heads(h, role) @ action_embed.T, h

    def forward(
        self, x: torch.Tensor, role: torch.Tensor, action_embed: torch.Tensor
    ) -> torch.Tensor:
        """Unroll x ``(B, T, n, in)`` with roles ``(B, T, n)`` -> q ``(B, T, n, A)``."""
        hidden = _unroll(self.fc_in, self.rnn, x)
        keys = self.heads(hidden, RowGroups.of(role, self.groups))
        return keys @ action_embed.T


class RODERoleSelector(nn.Module):
    """x = MLP(GRU(agent inputs)); Q(ρ) = x · z_ρ (:meth:`q`)."""

    def __init__(self, input_dim: int, hidden_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.hidden_dim, self.embed_dim = hidden_dim, embed_dim
        self.fc_in, self.rnn = _recurrent_trunk(input_dim, hidden_dim)
        self.head = nn.Sequential(
            nn.Linear(hidden_dim, 2 * hidden_dim), nn.ReLU(), nn.Linear(2 * hidden_dim, embed_dim)
        )

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One acting step -> (x ``(..., n, d)``, new h)."""
        h = self.rnn(torch.relu(self.fc_in(x)), h)
        return self.head(h), h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``(..., d)`` of every step of inputs ``(B, T, n, in)``."""
        return self.head(_unroll(self.fc_in, self.rnn, x))

    @staticmethod
    def q(x: torch.Tensor, role_embed: torch.Tensor) -> torch.Tensor:
        """Q(ρ) ``(..., k)`` of selector outputs ``(..., d)`` and role embeddings ``(k, d)``."""
        return x @ role_embed.T
