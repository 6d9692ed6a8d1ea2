"""SePS's VAE (Christianos et al. 2021, Sec. 4.1): an agent's identity encoded so that it
predicts the agent's transitions.

The encoder sees only the agent's one-hot id, so its posterior q(z | i) is all the VAE can know
of agent i; the decoder must predict agent i's next observation and the reward from
[z, o_i(t), one-hot a_i(t)]. Agents whose transitions differ must therefore get different latent
means μ_i, and k-means on the μ_i groups them (``clustering``).

encoder: one-hot id → Linear → ReLU → Linear → (μ, log σ²);
decoder: [z, o, one-hot a] → Linear → ReLU → Linear → ReLU → Linear → [ô(t+1), r̂].
Loss per tuple: squared error summed over the predicted dims + kl_weight · KL(q(z|i) ‖ N(0, I)),
averaged over the tuples.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from bdps_agents.device import randn_on
from bdps_agents.networks.role_selector import gaussian_kl


class VAELoss(NamedTuple):
    total: torch.Tensor  # mse + kl_weight * kl
    mse: torch.Tensor  # squared error summed over the predicted dims, mean over tuples
    kl: torch.Tensor  # KL summed over latent dims, mean over tuples


class AgentVAE(nn.Module):
    """The VAE of N agents with observations of ``obs_dim`` and ``n_actions`` actions."""

    eye: torch.Tensor  # (non-persistent) buffer: the one-hot ids

    def __init__(
        self,
        n_agents: int,
        obs_dim: int,
        n_actions: int,
        latent_dim: int = 10,
        encoder_hidden: int = 64,
        decoder_hidden: int = 64,
    ) -> None:
        super().__init__()
        self.n_agents, self.obs_dim, self.n_actions = n_agents, obs_dim, n_actions
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Linear(n_agents, encoder_hidden),
            nn.ReLU(),
            nn.Linear(encoder_hidden, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim + obs_dim + n_actions, decoder_hidden),
            nn.ReLU(),
            nn.Linear(decoder_hidden, decoder_hidden),
            nn.ReLU(),
            nn.Linear(decoder_hidden, obs_dim + 1),
        )
        self.register_buffer("eye", torch.eye(n_agents), persistent=False)

    def encode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every agent's posterior: (μ, log σ²), each ``(N, latent_dim)``."""
        mu, logvar = self.encoder(self.eye).chunk(2, dim=-1)
        return mu, logvar

    @torch.no_grad()
    def separation(self) -> float:
        """How far apart the agents' latent means lie in units of the posterior noise: the
        largest ‖μ_i − μ_j‖ over the mean σ. Near or below 1 the decoder cannot tell the agents
        apart through z (no structure found); well above 1 it does."""
        mu, logvar = self.encode()
        return float(torch.cdist(mu, mu).max() / (0.5 * logvar).exp().mean())

    def loss(
        self,
        agent: torch.Tensor,
        obs: torch.Tensor,
        act: torch.Tensor,
        rew: torch.Tensor,
        next_obs: torch.Tensor,
        kl_weight: float,
        generator: torch.Generator | None = None,
    ) -> VAELoss:
        """On M transition tuples: ``agent (M,)`` long ids, ``obs``/``next_obs (M, obs_dim)``,
        ``act (M,)`` long, ``rew (M,)``; z = μ + σ·ε drawn per tuple from ``generator``."""
        mu_all, logvar_all = self.encode()  # one encoder pass for the N ids, then gathered
        mu, logvar = mu_all[agent], logvar_all[agent]
        noise = randn_on(mu.shape, generator, mu)
        z = mu + (0.5 * logvar).exp() * noise
        act_onehot = nn.functional.one_hot(act, self.n_actions).to(obs.dtype)
        pred = self.decoder(torch.cat([z, obs, act_onehot], -1))
        target = torch.cat([next_obs, rew[:, None]], -1)
        mse = (pred - target).pow(2).sum(-1).mean()
        kl = gaussian_kl(mu, logvar).mean()
        return VAELoss(mse + kl_weight * kl, mse, kl)
