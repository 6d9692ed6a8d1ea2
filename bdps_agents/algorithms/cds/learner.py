"""CDS (Li et al., NeurIPS 2021) on the value-decomposition learner, through its hooks.

One update (the shared learner's, docs/methods/cds.md has the equations):

1. ``agent_q_values``: the :class:`~bdps_agents.networks.cds.CDSAgent` unroll gives Q_i =
   Q_shared(h_i) + Q_local_i(h_i), and keeps Q_local and the hidden states;
2. ``td_rewards`` (no gradient): per agent-step, with the *target* predictors (copied with the
   target networks, as the reference) on [h_i(t−1), o_i(t), a_i(t)]:
   r_i = β1·(log q(o_i(t+1) | ·, id_i) − log p(o_i(t+1) | ·)) + β2·KL(π_i ‖ mean_j π_j),
   π_i = softmax(c·Q_i) over available actions; r_int = mean_i r_i, times the annealing factor;
   the TD targets use r + β·r_int;
3. ``auxiliary_losses``: the L1 penalty mean |Q_local| (weight ``l1_weight``) joins the loss;
   here, too, the two online predictors take their own Adam steps (minibatches of the batch's
   valid agent-steps, MSE = −log-probability), before the agent step so that a target copy in
   this update includes them, as in the reference;
4. ``diagnostics``: the terms of r_int and their size against the team reward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tianshou.algorithm.optim import AdamOptimizerFactory
from torch import nn

from bdps_agents.algorithms.cds.policy import CDSPolicy
from bdps_agents.algorithms.value_decomposition import (
    AgentQ,
    AuxiliaryLoss,
    ValueDecomposition,
    ValueDecompositionStats,
)
from bdps_agents.networks.cds import CDSPredictors, observation_term, policy_divergence


@dataclass(kw_only=True)
class CDSTrainingStats(ValueDecompositionStats):
    local_l1: float | None = None  # mean |Q_local| (the L1 loss before its weight)
    cds_obs_term: float | None = None  # mean β1·(log q − log p) over valid agent-steps
    cds_kl_term: float | None = None  # mean β2·KL(π_i ‖ mean_j π_j)
    cds_intrinsic: float | None = None  # mean β·(anneal)·r_int: what the TD targets add
    cds_reward_abs: float | None = None  # mean |r| of the team reward, to compare with it
    cds_anneal: float | None = None  # the annealing factor of r_int (1 until the start)
    cds_pred_loss_id: float | None = None  # q's MSE (summed over obs dims), mean over steps
    cds_pred_loss_noid: float | None = None  # p's


class CDS(ValueDecomposition):
    """QMIX/QPLEX with CDS's agent heads and intrinsic reward (module docstring).

    :param predictors: the online next-observation predictors (a target copy is made).
    :param beta1: β1; :param beta2: β2; :param beta: β (see ``CDSOptions``).
    :param kl_scale: c of softmax(c·Q); None: β1.
    :param anneal_start_update: updates after which r_int is annealed (None: never), over
        ``anneal_updates`` updates.
    """

    policy: CDSPolicy
    q_values_label = "Q-values (CDS agent: shared + local heads)"
    stats_class = CDSTrainingStats

    def __init__(
        self,
        *,
        policy: CDSPolicy,
        mixer: nn.Module,
        predictors: CDSPredictors,
        beta1: float = 2.0,
        beta2: float = 1.0,
        beta: float = 0.1,
        kl_scale: float | None = None,
        l1_weight: float = 0.1,
        predictor_lr: float = 3e-4,
        predictor_grad_clip: float | None = 1.0,
        predictor_minibatch: int = 256,
        predictor_epochs: int = 1,
        predictor_max_steps: int | None = None,
        anneal_start_update: int | None = None,
        anneal_updates: int = 1,
        reference_intrinsic: bool = False,
        **learner_kwargs: Any,
    ) -> None:
        super().__init__(policy=policy, mixer=mixer, **learner_kwargs)
        if predictor_minibatch < 1 or predictor_epochs < 1 or anneal_updates < 1:
            raise ValueError(
                "predictor_minibatch, predictor_epochs and anneal_updates must be >= 1, got "
                f"{predictor_minibatch}, {predictor_epochs}, {anneal_updates}"
            )
        self.beta1, self.beta2, self.beta = beta1, beta2, beta
        self.kl_scale = beta1 if kl_scale is None else kl_scale
        self.l1_weight = l1_weight
        self.predictor_minibatch, self.predictor_epochs = predictor_minibatch, predictor_epochs
        self.predictor_max_steps = predictor_max_steps
        self.anneal_start_update, self.anneal_updates = anneal_start_update, anneal_updates
        self.reference_intrinsic = reference_intrinsic
        self.predictors = predictors
        self.target_predictors = self._add_lagged_network(predictors)
        factory = AdamOptimizerFactory(lr=predictor_lr)
        # one optimiser each, as the reference (each clipped on its own)
        self.predictor_optims = [
            self._create_optimizer(net, factory, predictor_grad_clip)
            for net in (predictors.with_id, predictors.without_id)
        ]
        self._intrinsic_stats: dict[str, float] = {}

    # -- the shared learner's hooks --------------------------------------------------------------
    def agent_q_values(self, ep: dict[str, torch.Tensor], target: bool = False) -> AgentQ:
        """Q_i = shared + local heads; the online unroll keeps Q_local and the hidden states."""
        if target:
            return AgentQ(self.target_agent(ep["inputs"]))
        q, local, hidden = self.policy.agent(ep["inputs"], parts=True)
        return AgentQ(q, {"local": local, "hidden": hidden})

    def anneal_factor(self) -> float:
        """1 until ``anneal_start_update`` updates, then linearly down to 0."""
        start = self.anneal_start_update
        if start is None or self.num_updates <= start:
            return 1.0
        return max(0.0, 1.0 - (self.num_updates - start) / self.anneal_updates)

    def predictor_inputs(
        self, ep: dict[str, torch.Tensor], online: AgentQ
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """([h_i(t−1), o_i(t), a_i(t)], one-hot id, o_i(t+1)), each ``(B, T, n, ·)``; h(−1) = 0
        (the reference pairs the hidden state before step t with o_t and a_t)."""
        hidden = online.extras["hidden"].detach()
        B, T, n = ep["act"].shape
        h_prev = torch.cat([hidden.new_zeros(B, 1, n, hidden.shape[-1]), hidden[:, : T - 1]], 1)
        x, ids = self.predictors.inputs(h_prev, ep["obs"][:, :-1], ep["act"])
        return x, ids, ep["obs"][:, 1:]

    def intrinsic_terms(
        self, ep: dict[str, torch.Tensor], online: AgentQ
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(observation term, β2·KL term), each ``(B, T, n)``, with the target predictors."""
        x, ids, next_obs = self.predictor_inputs(ep, online)
        log_q, log_p = self.target_predictors(x, ids, next_obs)
        obs_term = observation_term(log_q, log_p, self.beta1, self.reference_intrinsic)
        q = online.q[:, :-1].detach()
        kl = policy_divergence(q, ep["mask"][:, :-1], self.kl_scale, self.reference_intrinsic)
        return obs_term, self.beta2 * kl

    @torch.no_grad()
    def td_rewards(self, ep: dict[str, torch.Tensor], online: AgentQ) -> torch.Tensor:
        """r + β·(anneal)·r_int, r_int = mean over agents of the two terms (no gradient)."""
        obs_term, kl_term = self.intrinsic_terms(ep, online)
        valid = ep["valid"].float()
        bonus = self.beta * self.anneal_factor() * (obs_term + kl_term).mean(-1) * valid
        n_valid = valid.sum().clamp_min(1.0)

        def mean(x: torch.Tensor) -> float:  # over valid steps (and agents)
            per_step = x.mean(-1) if x.dim() == 3 else x
            return float((per_step * valid).sum() / n_valid)

        self._intrinsic_stats = {
            "cds_obs_term": mean(obs_term),
            "cds_kl_term": mean(kl_term),
            "cds_intrinsic": mean(bonus),
            "cds_reward_abs": mean(ep["rew"].abs()),
            "cds_anneal": self.anneal_factor(),
        }
        return ep["rew"] + bonus

    def train_predictors(
        self, x: torch.Tensor, ids: torch.Tensor, next_obs: torch.Tensor
    ) -> tuple[float, float]:
        """Adam steps of q and p on minibatches of the rows ``(N, ·)``: ``predictor_epochs``
        shuffled passes (``policy.torch_rng``), at most ``predictor_max_steps`` steps. Returns
        their mean losses (q's, p's)."""
        net_q, net_p = self.predictors.with_id, self.predictors.without_id
        optim_q, optim_p = self.predictor_optims
        N, size = len(x), self.predictor_minibatch
        losses: list[tuple[float, float]] = []
        for _ in range(self.predictor_epochs):
            # drawn on the CPU, where the policy's generator is
            order = torch.randperm(N, generator=self.policy.torch_rng).to(x.device)
            for start in range(0, N, size):
                if self.predictor_max_steps is not None and len(losses) >= self.predictor_max_steps:
                    break
                rows = order[start : start + size]
                loss_q = -net_q.log_prob(x[rows], next_obs[rows], ids[rows]).mean()
                loss_p = -net_p.log_prob(x[rows], next_obs[rows]).mean()
                self.check_finite({"CDS predictor loss (with id)": loss_q})
                self.check_finite({"CDS predictor loss (without id)": loss_p})
                optim_q.step(loss_q)
                optim_p.step(loss_p)
                losses.append((loss_q.item(), loss_p.item()))
        if not losses:
            return float("nan"), float("nan")
        q_mean, p_mean = torch.tensor(losses).mean(0).tolist()
        return q_mean, p_mean

    def auxiliary_losses(self, ep: dict[str, torch.Tensor], online: AgentQ) -> list[AuxiliaryLoss]:
        """The L1 penalty on the local heads' Q over valid steps; trains the predictors first
        (module docstring, step 3)."""
        x, ids, next_obs = self.predictor_inputs(ep, online)
        keep = ep["valid"]  # (B, T): every agent of a valid step
        loss_q, loss_p = self.train_predictors(
            x[keep].flatten(0, -2), ids[keep].flatten(0, -2), next_obs[keep].flatten(0, -2)
        )
        local = online.extras["local"][:, :-1]  # (B, T, n, A)
        valid = ep["valid"].float()
        l1 = (local.abs().mean((-2, -1)) * valid).sum() / valid.sum().clamp_min(1.0)
        stats = {"cds_pred_loss_id": loss_q, "cds_pred_loss_noid": loss_p}
        return [AuxiliaryLoss("local_l1", "CDS L1 of the local heads", l1, self.l1_weight, stats)]

    def diagnostics(self, ep: dict[str, torch.Tensor], online: AgentQ) -> dict[str, float]:
        """The intrinsic reward's terms (computed by ``td_rewards`` in this update)."""
        return dict(self._intrinsic_stats)
