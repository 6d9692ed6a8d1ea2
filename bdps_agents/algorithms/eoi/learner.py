"""EOI's learner: the shared QMIX update of the agents, unchanged, plus EOI's two small models
trained on the same replayed episodes with their own Adam optimisers (the reference's lr 1e-4,
apart from QMIX's):

1. the batch's (episode, step, agent) tuples at valid steps (``Transitions``), shuffled with the
   policy's torch generator and cut into minibatches of ``minibatch`` (at most
   ``max_minibatches`` of them);
2. per minibatch: one classifier step on (o_i(t+1), i), cross-entropy + w · entropy; then
   r_i = scale · P_φ(i | o_i(t)) (or of o_i(t+1), ``reward_obs``) from the stepped classifier,
   one Q^p step on (Q^p(o_i(t), i, a_i(t)) − y)², y = r_i + γ^p (1 − d_t) max_{a' available}
   Q̄^p(o_i(t+1), i, a'), and the soft update Q̄^p <- (1 − τ) Q̄^p + τ Q^p;
3. then the QMIX update (``ValueDecomposition._update_with_batch``).

The target Q̄^p is an attribute of the learner (not a lagged network of the mixin: those are
copied every ``target_update_interval`` updates), so checkpoints carry it, as they carry both
optimisers (created through ``Algorithm._create_optimizer``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch
from torch import nn

from bdps_agents.algorithms.eoi.intrinsic import Transitions, intrinsic_targets, soft_update
from bdps_agents.algorithms.eoi.policy import EOIPolicy
from bdps_agents.algorithms.value_decomposition import (
    NonFiniteError,
    ValueDecomposition,
    ValueDecompositionStats,
)


@dataclass(kw_only=True)
class EOITrainingStats(ValueDecompositionStats):
    classifier_loss: float | None = None
    eoi_accuracy: float | None = None  # the classifier's, on the batch's next observations
    intrinsic_reward: float | None = None  # mean r_i = scale · P_φ(i | o_i) of the tuples
    intrinsic_td_loss: float | None = None  # Q^p's TD loss, mean over the minibatches
    intrinsic_q: float | None = None  # mean Q^p(o, a) of the taken actions
    eoi_minibatches: float | None = None
    eoi_episode_share: float | None = None  # replayed episodes that were EOI-enabled
    eoi_replaced_share: float | None = None  # replayed agent actions replaced by argmax Q^p
    eoi_replace_rate: float | None = None  # steps with a replacement / steps of enabled episodes


class EOI(ValueDecomposition):
    """QMIX with EOI's classifier and intrinsic value function (module docstring).

    :param classifier_lr, intrinsic_lr: the two models' Adam learning rates.
    :param entropy_weight: w of the classifier's entropy term.
    :param reward_scale_intrinsic: the intrinsic reward's scale (the reference's 10).
    :param reward_obs: ``"current"`` (r from o_i(t), the reference) or ``"next"`` (o_i(t+1)).
    :param intrinsic_gamma: γ^p of Q^p.
    :param target_tau: τ of the soft update (the fraction the target moves to the online net).
    :param minibatch, max_minibatches: the tuples per step, the steps per update (None: all).
    """

    policy: EOIPolicy
    stats_class = EOITrainingStats

    def __init__(
        self,
        *,
        policy: EOIPolicy,
        mixer: nn.Module,
        classifier_lr: float = 1e-4,
        intrinsic_lr: float = 1e-4,
        entropy_weight: float = 0.1,
        reward_scale_intrinsic: float = 10.0,
        reward_obs: str = "current",
        intrinsic_gamma: float = 0.92,
        target_tau: float = 0.005,
        minibatch: int = 256,
        max_minibatches: int | None = None,
        **learner_kwargs: Any,
    ) -> None:
        super().__init__(policy=policy, mixer=mixer, **learner_kwargs)
        if reward_obs not in ("current", "next"):
            raise ValueError(f"eoi.reward_obs must be 'current' or 'next', got {reward_obs!r}")
        if not 0.0 < target_tau <= 1.0:
            raise ValueError(f"eoi.target_tau must lie in (0, 1], got {target_tau}")
        if minibatch < 1 or (max_minibatches is not None and max_minibatches < 1):
            raise ValueError("eoi.minibatch and eoi.max_minibatches must be >= 1")
        self.entropy_weight = entropy_weight
        self.reward_scale_intrinsic, self.reward_obs = reward_scale_intrinsic, reward_obs
        self.intrinsic_gamma, self.target_tau = intrinsic_gamma, target_tau
        self.minibatch, self.max_minibatches = minibatch, max_minibatches
        self.target_intrinsic_q = copy.deepcopy(policy.intrinsic_q)
        self.target_intrinsic_q.requires_grad_(False)
        # after QMIX's optimiser, so that its place in state_dict()["_optimizers"] is unchanged
        self.classifier_optim = self._create_optimizer(
            policy.classifier, AdamOptimizerFactory(lr=classifier_lr)
        )
        self.intrinsic_optim = self._create_optimizer(
            policy.intrinsic_q, AdamOptimizerFactory(lr=intrinsic_lr)
        )

    # -- the update ------------------------------------------------------------------------------
    def _update_with_batch(self, batch: Batch) -> ValueDecompositionStats:  # type: ignore[override]
        if len(batch.get_keys()) == 0:
            return self.stats_class()
        eoi = {**self.train_intrinsic(self.transitions(batch)), **acting_shares(batch)}
        stats = super()._update_with_batch(batch)
        for key, value in eoi.items():
            setattr(stats, key, value)
        return stats

    def transitions(self, batch: Batch) -> Transitions:
        """The batch's tuples at valid steps (the shared learner's tensors of the episodes)."""
        obs = self.to_device(batch.obs.obs, torch.float32)
        mask = self.to_device(batch.obs.mask).bool()
        mask = mask | ~mask.any(-1, keepdim=True)
        return Transitions.of(
            obs,
            self.to_device(batch.act, torch.long),
            mask,
            self.to_device(batch.terminated),
            self.to_device(batch.valid),
        )

    def train_intrinsic(self, data: Transitions) -> dict[str, float]:
        """Steps 1-2 of the module docstring; returns their statistics."""
        policy = self.policy
        accuracy = policy.classifier.accuracy(data.next_obs, data.agent)
        # drawn on the CPU, where the policy's generator is
        order = torch.randperm(len(data), generator=policy.torch_rng).to(data.obs.device)
        chunks = order.split(self.minibatch)[: self.max_minibatches]
        sums = {"classifier_loss": 0.0, "intrinsic_td_loss": 0.0}
        reward_sum = q_sum = 0.0
        for k, idx in enumerate(chunks):
            mb = data[idx]
            clf_loss, _ = policy.classifier.loss(mb.next_obs, mb.agent, self.entropy_weight)
            self._check(clf_loss, "classifier loss", k)
            self.classifier_optim.step(clf_loss)
            with torch.no_grad():
                seen = mb.obs if self.reward_obs == "current" else mb.next_obs
                reward = self.reward_scale_intrinsic * policy.classifier.prob_of(seen, mb.agent)
                next_q = self.target_intrinsic_q(mb.next_obs, mb.agent)
                y = intrinsic_targets(reward, mb.done, next_q, mb.next_mask, self.intrinsic_gamma)
            q = policy.intrinsic_q(mb.obs, mb.agent).gather(-1, mb.act[:, None]).squeeze(-1)
            td = ((q - y) ** 2).mean()
            self._check(td, "intrinsic TD loss", k)
            self.intrinsic_optim.step(td)
            soft_update(self.target_intrinsic_q, policy.intrinsic_q, self.target_tau)
            sums["classifier_loss"] += clf_loss.item()
            sums["intrinsic_td_loss"] += td.item()
            reward_sum += reward.sum().item()
            q_sum += q.detach().sum().item()
        n_chunks, n_rows = len(chunks), sum(len(idx) for idx in chunks)
        if n_chunks == 0:
            return {"eoi_accuracy": accuracy, "eoi_minibatches": 0.0}
        return {
            **{key: value / n_chunks for key, value in sums.items()},
            "eoi_accuracy": accuracy,
            "intrinsic_reward": reward_sum / n_rows,
            "intrinsic_q": q_sum / n_rows,
            "eoi_minibatches": float(n_chunks),
        }

    def _check(self, value: torch.Tensor, name: str, chunk: int) -> None:
        if not torch.isfinite(value).all():
            raise NonFiniteError(
                f"non-finite EOI {name} ({float(value)}) in minibatch {chunk + 1} of update "
                f"{self.num_updates + 1}; the QMIX step of this update was not taken"
            )


def acting_shares(batch: Batch) -> dict[str, float]:
    """What acting recorded in the replayed episodes (``EOIPolicy``): the share of EOI-enabled
    episodes, of replaced agent actions among all, and of steps with a replacement among the
    steps of enabled episodes. Empty for episodes stored without these outputs."""
    stored = batch.get("policy", Batch())
    if not {"eoi_episode", "eoi_agent"} <= set(stored.get_keys()):
        return {}
    valid = torch.as_tensor(batch.valid)
    enabled = torch.as_tensor(stored.eoi_episode).bool() & valid
    replaced = (torch.as_tensor(stored.eoi_agent) >= 0) & valid
    n_agents = batch.act.shape[-1]
    out = {
        "eoi_episode_share": enabled[:, 0].float().mean().item(),
        "eoi_replaced_share": replaced.sum().item() / (valid.sum().item() * n_agents),
    }
    if enabled.any():
        out["eoi_replace_rate"] = replaced.sum().item() / enabled.sum().item()
    return out
