"""SePS (Christianos et al., ICML 2021, "Scaling multi-agent RL with selective parameter
sharing") on the value-decomposition learner: the QMIX-based variant that the BDPS paper
compares with as single-level selective sharing. The reference implementation (uoe-agents/seps)
trains A2C; here the RL part is this library's recurrent QMIX.

One training run, in updates (each also the shared learner's QMIX update, so Q learns
throughout):

1. updates 1..P (P = ``pretrain_updates``; config ``seps.pretrain_steps`` / steps per update):
   every agent uses network 0 (full sharing, as QMIX), and each update adds the VAE loss on the
   replayed batch's per-agent transitions (one-hot i, o_i(t), a_i(t), r(t), o_i(t+1)) at valid
   steps (``vae_loss``; r is the team reward of the joint env: the reference uses per-agent
   rewards);
2. at the start of update P + 1, once: μ_i = encoder(one-hot i), k-means on the μ_i with k given
   or chosen by the Davies–Bouldin index (``clustering.cluster_agents``); agent i is then fixed
   to network ``cluster(i)``. Every network (online and target) starts as a copy of network 0,
   and so do its Adam moments, so the pre-training's learning carries over (``cluster``);
3. updates P + 1, ...: QMIX with one network per cluster (no VAE loss; the VAE is frozen).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from tianshou.data import Batch
from torch import nn

from bdps_agents.algorithms.seps.clustering import cluster_agents
from bdps_agents.algorithms.seps.policy import SePSPolicy
from bdps_agents.algorithms.value_decomposition import (
    AgentQ,
    AuxiliaryLoss,
    ValueDecomposition,
    ValueDecompositionStats,
)


@dataclass(kw_only=True)
class SePSTrainingStats(ValueDecompositionStats):
    overflow: ClassVar[str] = "clusters"

    vae_loss: float | None = None  # while pre-training
    vae_mse: float | None = None
    vae_kl: float | None = None
    seps_clustered: float | None = None  # 0 while pre-training, then 1
    seps_k: float | None = None  # networks in use: 1 while pre-training, then the clusters
    seps_db: float | None = None  # Davies–Bouldin index of the chosen grouping, where defined
    seps_separation: float | None = None  # max ‖μ_i − μ_j‖ / mean σ of the VAE's latents
    # each agent's network (logged as clusters/agent_0, ...)
    clusters: dict[str, float] = field(default_factory=dict)


class SePS(ValueDecomposition):
    """QMIX with SePS's selective sharing (module docstring).

    :param pretrain_updates: P, the updates that train the VAE before the clustering.
    :param n_clusters: k, or None to choose it by the Davies–Bouldin index over
        2..``max_clusters``.
    :param max_clusters: the largest k the Davies–Bouldin choice tries.
    :param kl_weight: the KL term's weight in the VAE loss.
    :param vae_loss_weight: the VAE loss's weight in the total loss.
    :param vae_max_tuples: at most this many transition tuples per update for the VAE, drawn
        uniformly from the batch's (None: all).
    """

    policy: SePSPolicy
    q_values_label = "Q-values (cluster networks)"
    stats_class = SePSTrainingStats

    def __init__(
        self,
        *,
        policy: SePSPolicy,
        mixer: nn.Module,
        pretrain_updates: int,
        n_clusters: int | None = None,
        max_clusters: int | None = None,
        kl_weight: float = 1e-4,
        vae_loss_weight: float = 1.0,
        vae_max_tuples: int | None = None,
        **learner_kwargs: Any,
    ) -> None:
        super().__init__(policy=policy, mixer=mixer, **learner_kwargs)
        n, G = policy.n_agents, policy.n_networks
        if pretrain_updates < 0:
            raise ValueError(f"pretrain_updates must be >= 0, got {pretrain_updates}")
        if n_clusters is not None and not 1 <= n_clusters <= G:
            raise ValueError(
                f"n_clusters ({n_clusters}) must lie in 1..{G}, the policy's cluster networks"
            )
        max_clusters = min(n - 1, G) if max_clusters is None else max_clusters
        if n_clusters is None and max_clusters > G:
            raise ValueError(
                f"max_clusters ({max_clusters}) exceeds the policy's {G} cluster networks"
            )
        self.pretrain_updates = pretrain_updates
        self.n_clusters, self.max_clusters = n_clusters, max_clusters
        self.kl_weight, self.vae_loss_weight = kl_weight, vae_loss_weight
        self.vae_max_tuples = vae_max_tuples

    @property
    def clustered(self) -> bool:
        return self.policy.clustered

    # -- the clustering (once) ----------------------------------------------------------------
    def _update_with_batch(self, batch: Batch) -> ValueDecompositionStats:  # type: ignore[override]
        # not a change of the update: the clustering precedes update P + 1 (an empty batch,
        # which the shared update skips, counts no update and clusters nothing)
        if (
            len(batch.get_keys())
            and not self.clustered
            and self.num_updates >= self.pretrain_updates
        ):
            self.cluster()
        return super()._update_with_batch(batch)

    @torch.no_grad()
    def cluster(self) -> None:
        """Group the agents by their latent means and fix the assignment; every cluster network
        (online, target, Adam moments) starts as a copy of network 0."""
        policy = self.policy
        mu, _ = policy.vae.encode()
        # once, small: on the CPU, where the policy's generator is
        result = cluster_agents(mu.cpu(), self.n_clusters, self.max_clusters, policy.torch_rng)
        target = list(self.target_agent.parameters())
        for online, lagged in zip(policy.agent.parameters(), target, strict=True):
            online[1:] = online[:1].clone()  # stacked weights: (G, ...) with network g at [g]
            lagged[1:] = lagged[:1].clone()
            state = self.optim._optim.state.get(online, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][1:] = state[key][:1].clone()
        policy.set_assignment(result.labels, result.score)

    # -- the shared learner's hooks --------------------------------------------------------------
    def agent_q_values(self, ep: dict[str, torch.Tensor], target: bool = False) -> AgentQ:
        """Per-agent Q-values with each agent's (fixed) network: ``index`` = the assignment,
        ``(n,)`` expanded to ``(B, T+1, n)``."""
        agent = self.target_agent if target else self.policy.agent
        B, T1 = ep["inputs"].shape[:2]
        return AgentQ(agent(ep["inputs"], index=self.policy.agent_index(B, T1)))

    def vae_loss(self, ep: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The VAE loss on the batch's transition tuples at valid steps (at most
        ``vae_max_tuples`` of them, drawn uniformly)."""
        obs, act, valid = ep["obs"], ep["act"], ep["valid"]
        B, T, n = act.shape
        keep = valid[:, :, None].expand(B, T, n).reshape(-1)
        agent = torch.arange(n, device=act.device).expand(B, T, n).reshape(-1)[keep]
        rew = ep["rew"][:, :, None].expand(B, T, n).reshape(-1)[keep]
        o, o_next = obs[:, :-1].flatten(0, 2)[keep], obs[:, 1:].flatten(0, 2)[keep]
        a = act.reshape(-1)[keep]
        generator = self.policy.torch_rng
        if self.vae_max_tuples is not None and len(a) > self.vae_max_tuples:
            pick = torch.randperm(len(a), generator=generator)[: self.vae_max_tuples].to(a.device)
            agent, o, a, rew, o_next = agent[pick], o[pick], a[pick], rew[pick], o_next[pick]
        out = self.policy.vae.loss(agent, o, a, rew, o_next, self.kl_weight, generator)
        return out.total, {"vae_mse": out.mse.item(), "vae_kl": out.kl.item()}

    def auxiliary_losses(self, ep: dict[str, torch.Tensor], online: AgentQ) -> list[AuxiliaryLoss]:
        """The VAE loss while pre-training; nothing after the clustering."""
        if self.clustered:
            return []
        value, stats = self.vae_loss(ep)
        return [AuxiliaryLoss("vae_loss", "SePS VAE loss", value, self.vae_loss_weight, stats)]

    def diagnostics(self, ep: dict[str, torch.Tensor], online: AgentQ) -> dict[str, float]:
        """Whether the agents are clustered, the networks in use, the latent separation
        (``AgentVAE.separation``: ≲ 1 = the VAE tells no agents apart), the grouping's
        Davies–Bouldin index (after the clustering, where defined) and each agent's network."""
        policy = self.policy
        assignment = policy.assignment.tolist()
        out = {
            "seps_clustered": float(self.clustered),
            "seps_k": float(len(set(assignment))),
            "seps_separation": policy.vae.separation(),
            **{f"agent_{i}": float(g) for i, g in enumerate(assignment)},
        }
        score = float(policy.clusters.score)
        if score >= 0:  # -1: not clustered yet, or undefined (k = 1, or one agent per network)
            out["seps_db"] = score
        return out
