"""The role selector U (paper Sec. 3.1): a GRU-VAE over each agent's recent advantages.

An agent's role is read from the VAE bottleneck rather than from its observation, so one odd
action does not flip it: a GRU summarises the last ``T_U`` advantage vectors
``A_t = max_a Q_t - Q_t`` (>= 0), the encoder maps that summary to a k-dimensional Gaussian, and
the role is the argmax of a sample from it (Eq. 3). Training reconstructs the advantage window
from the sample and regularises the Gaussian towards N(0, I) (Eq. 7).

Choices the paper leaves open (App. F only says "simple linear layers and activation functions"):

* encoder: ``h -> Linear -> ReLU -> Linear -> (mu, logvar)``, one hidden layer;
* decoder: ``z -> Linear -> ReLU -> Linear`` producing the whole flattened window
  ``window * n_actions`` at once (not a recurrent decoder), with a linear output: the target is
  >= 0 but an unconstrained output keeps gradients alive where a ReLU would clip them;
* the GRU starts from zeros for every window, so a role depends on that window only;
* windows are standardised before the GRU and as the reconstruction target, with a running
  mean and variance of their elements kept as buffers (so they travel in checkpoints and in the
  learner process's weights). Raw advantages have an element std of a few hundredths on LBF, and
  a per-element MSE at that scale gives the encoder almost no signal: the latent then either
  collapses to the prior or keeps a constant offset that picks one role (docs/algorithm.md).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from bdps_agents.device import randn_on


class RoleOutput(NamedTuple):
    """One role decision for N agents."""

    role: torch.Tensor  # (N,) long, argmax of z (Eq. 3)
    z: torch.Tensor  # (N, n_roles) latent sample (== mu when not sampling)
    mu: torch.Tensor  # (N, n_roles)
    logvar: torch.Tensor  # (N, n_roles) log sigma^2
    recon: torch.Tensor  # (N, window, n_actions) decoded advantage window


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)), summed over the last dim -> shape ``mu[..., 0]``."""
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


def _weighted_mean(x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of x (N,) over rows with weight > 0; 0 (with a graph) when no row counts."""
    if weight is None:
        return x.mean()
    w = weight.to(x.dtype)
    # where, not w * x: a non-finite excluded row must not make the value 0 * inf = NaN (its
    # gradient would still be NaN, so padding should be finite, e.g. zeros)
    total = torch.where(w > 0, w * x, torch.zeros_like(x)).sum()
    denom = w.sum()
    return total / torch.where(denom > 0, denom, torch.ones_like(denom))


class RoleSelector(nn.Module):
    """Advantage windows ``(N, window, n_actions)`` -> roles ``(N,)`` via a GRU-VAE.

    N is any flat batch of agents; callers reshape ``(B, n)`` to ``N`` and back.
    ``standardize``: divide windows by the running std of their elements after subtracting the
    running mean (:meth:`update_scale` feeds the running moments); False feeds raw advantages.
    """

    # the running moments are a plain average over the first 1 / SCALE_RATE updates, then an
    # exponential one, so they follow the advantages' scale as the Q-values grow
    SCALE_RATE = 0.01
    MIN_STD = 1e-6

    # buffers (register_buffer in __init__)
    adv_mean: torch.Tensor
    adv_var: torch.Tensor
    scale_updates: torch.Tensor

    def __init__(
        self,
        n_actions: int,
        n_roles: int,
        window: int,
        hidden_dim: int = 64,
        vae_hidden_dim: int = 64,
        standardize: bool = True,
    ) -> None:
        super().__init__()
        if n_roles < 1 or window < 1 or n_actions < 1:
            raise ValueError(
                f"n_actions, n_roles and window must be >= 1, got {n_actions}, {n_roles}, {window}"
            )
        self.n_actions, self.n_roles, self.window = n_actions, n_roles, window
        self.hidden_dim, self.vae_hidden_dim = hidden_dim, vae_hidden_dim
        self.standardize = standardize
        self.register_buffer("adv_mean", torch.zeros(()))
        self.register_buffer("adv_var", torch.ones(()))
        self.register_buffer("scale_updates", torch.zeros((), dtype=torch.long))
        self.gru = nn.GRU(n_actions, hidden_dim, batch_first=True)
        # one output layer for mu and logvar together, split in encode()
        self.encoder = nn.Sequential(
            nn.Linear(hidden_dim, vae_hidden_dim), nn.ReLU(), nn.Linear(vae_hidden_dim, 2 * n_roles)
        )
        self.decoder = nn.Sequential(
            nn.Linear(n_roles, vae_hidden_dim),
            nn.ReLU(),
            nn.Linear(vae_hidden_dim, window * n_actions),
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the running scale existed: keep the identity scale (mean 0,
        # variance 1), under which scaled() returns the raw windows as those models saw them
        identity = {"adv_mean": 0.0, "adv_var": 1.0, "scale_updates": 0}
        for name, value in identity.items():
            state_dict.setdefault(prefix + name, torch.full_like(getattr(self, name), value))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check(self, adv: torch.Tensor) -> None:
        if adv.dim() != 3 or adv.shape[1:] != (self.window, self.n_actions):
            raise ValueError(
                f"expected advantages of shape (N, {self.window}, {self.n_actions}), "
                f"got {tuple(adv.shape)}"
            )

    @torch.no_grad()
    def update_scale(self, adv: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Fold the elements of the windows ``adv`` ``(N, window, n_actions)`` with weight > 0
        into the running mean and variance (one call per update)."""
        self._check(adv)
        rows = adv if weight is None else adv[weight > 0]
        if rows.numel() == 0:
            return
        mean, var = rows.mean(), rows.var(correction=0)
        rate = max(self.SCALE_RATE, 1.0 / float(self.scale_updates + 1))
        # the variance of the mixture of the old and the new moments
        delta = mean - self.adv_mean
        self.adv_var.copy_((1 - rate) * (self.adv_var + rate * delta**2) + rate * var)
        self.adv_mean.add_(rate * delta)
        self.scale_updates.add_(1)

    def scaled(self, adv: torch.Tensor) -> torch.Tensor:
        """The windows as the VAE sees and reconstructs them (standardised, or raw)."""
        self._check(adv)
        if not self.standardize:
            return adv
        return (adv - self.adv_mean) / self.adv_var.sqrt().clamp_min(self.MIN_STD)

    def features(self, scaled: torch.Tensor) -> torch.Tensor:
        """The GRU's last hidden state over a (scaled) window, from zeros: ``(N, hidden_dim)``."""
        return self.gru(scaled)[1][-1]  # the final hidden state (cuDNN on CUDA)

    def encode(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Role feature ``(N, hidden_dim)`` -> (mu, logvar), each ``(N, n_roles)``."""
        mu, logvar = self.encoder(h).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent ``(N, n_roles)`` -> reconstructed window ``(N, window, n_actions)``."""
        return self.decoder(z).view(*z.shape[:-1], self.window, self.n_actions)

    def forward(
        self,
        adv: torch.Tensor,
        sample: bool = True,
        generator: torch.Generator | None = None,
    ) -> RoleOutput:
        """Choose roles from raw windows; ``sample=False`` uses z = mu (deterministic evaluation).
        ``recon`` is in the scaled space (:meth:`scaled`)."""
        mu, logvar = self.encode(self.features(self.scaled(adv)))
        if sample:
            eps = randn_on(mu.shape, generator, mu)
            z = mu + (0.5 * logvar).exp() * eps
        else:
            z = mu
        return RoleOutput(z.argmax(-1), z, mu, logvar, self.decode(z))

    def loss(
        self,
        adv: torch.Tensor,
        out: RoleOutput,
        kl_weight: float,
        weight: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eq. 7: (total, mse, kl) with total = mse + kl_weight * kl.

        mse is the mean over every element of the scaled window, kl is summed over latent dims
        and averaged over agents. ``weight`` ``(N,)`` (0/1 or non-negative) drops padded or
        invalid windows from both means; if nothing counts all three are 0.
        """
        mse = (out.recon - self.scaled(adv)).pow(2).flatten(1).mean(-1)  # (N,)
        kl = gaussian_kl(out.mu, out.logvar)  # (N,)
        mse, kl = _weighted_mean(mse, weight), _weighted_mean(kl, weight)
        return mse + kl_weight * kl, mse, kl

    @torch.no_grad()
    def information(
        self, adv: torch.Tensor, out: RoleOutput, weight: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Whether the latent carries information about the windows, against trivial baselines.

        * ``role_recon_ratio``: MSE of the window decoded from mu ÷ MSE of predicting the mean
          window of the batch (scaled space). ≈ 1: the code tells nothing the mean does not;
          1 by definition when the windows do not vary.
        * ``role_latent_snr``: variance of mu across windows ÷ mean sigma², summed over latent
          dims. ≈ 0: every window gets the same code up to the sampling noise.
        """
        x = self.scaled(adv).flatten(1)
        w = torch.ones(len(x), device=x.device) if weight is None else (weight > 0).to(x.dtype)
        if w.sum() < 2:
            return {}
        keep = w > 0
        x, mu, logvar = x[keep], out.mu[keep], out.logvar[keep]
        spread = (x - x.mean(0)).pow(2).mean()
        recon = self.decode(mu).flatten(1)
        ratio = (recon - x).pow(2).mean() / spread if spread > 1e-12 else torch.ones(())
        snr = mu.var(0, correction=0).sum() / logvar.exp().mean(0).sum()
        return {"role_recon_ratio": float(ratio), "role_latent_snr": float(snr)}
