"""Recurrent QMIX as a Tianshou 2.0.1 ``OffPolicyAlgorithm``.

One update, top to bottom (``_update_with_batch``):

1. sample B whole episodes (``EpisodeReplayBuffer``), padded to T steps with a ``valid`` mask;
2. agent inputs for steps 0..T (step T+1 of an episode is the observation after its last action);
3. unroll the online and the target agent networks over the sequences from zero hidden states;
4. Q_tot(s_t, a_t) = mixer(Q_i(τ_i, a_i), s_t);
5. target: double-Q action a' = argmax_online Q(τ', ·) among available actions, evaluated by the
   target networks: Q_tot'(s_{t+1}) = target_mixer(Q̄_i(τ', a'), s_{t+1});
6. y_t = r_t + γ(1 − terminated_t)·Q_tot'(s_{t+1}), or its TD(λ) mixture (``td_lambda_targets``);
   truncated episodes still bootstrap;
7. loss = masked mean of (Q_tot − y)²; one Adam step with gradient clipping; copy the target
   networks every ``target_update_interval`` updates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import (
    Algorithm,
    LaggedNetworkFullUpdateAlgorithmMixin,
    OffPolicyAlgorithm,
    TrainingStats,
)
from tianshou.algorithm.optim import AdamOptimizerFactory, OptimizerFactory
from tianshou.data import Batch, ReplayBuffer
from tianshou.data.types import RolloutBatchProtocol
from torch import nn

from bdps_agents.learner_process import LearnerProcess
from bdps_agents.policy import MultiAgentQPolicy, masked_argmax
from bdps_agents.replay import EpisodeReplayBuffer


class NonFiniteError(FloatingPointError):
    """A loss or Q-value became NaN or infinite during an update."""


@dataclass(kw_only=True)
class QMIXTrainingStats(TrainingStats):
    loss: float | None = None  # the total loss (BDPS: L_TD + L_U + L_V)
    td_loss: float | None = None
    q_taken_mean: float | None = None
    target_mean: float | None = None
    grad_norm: float | None = None


class GradNormOptimizer(Algorithm.Optimizer):
    """Tianshou's optimiser wrapper, also returning the gradient norm measured before clipping."""

    def step(self, loss: torch.Tensor, retain_graph=None, create_graph=False) -> float:  # type: ignore[override]
        self._optim.zero_grad()
        loss.backward(retain_graph=retain_graph, create_graph=create_graph)
        limit = self._max_grad_norm if self._max_grad_norm is not None else float("inf")
        norm = nn.utils.clip_grad_norm_(self._module.parameters(), max_norm=limit)
        self._optim.step()
        return float(norm)


def td_lambda_targets(
    rew: torch.Tensor,
    terminated: torch.Tensor,
    valid: torch.Tensor,
    q_next: torch.Tensor,
    gamma: float,
    td_lambda: float,
) -> torch.Tensor:
    """λ-returns, backwards over time; all inputs ``(B, T)``, ``q_next[:, t]`` = Q_tot'(s_{t+1}).

    G_t = r_t + γ(1 − d_t)·[(1 − λ)·Q'_{t+1} + λ·G_{t+1}], and at the last valid step of an
    episode the bracket is Q'_{t+1} alone. λ = 0 gives one-step targets r_t + γ(1 − d_t)·Q'_{t+1}.
    """
    B, T = rew.shape
    not_done = 1.0 - terminated.float()
    out = torch.zeros_like(rew)
    later = torch.zeros(B, dtype=rew.dtype, device=rew.device)
    for t in range(T - 1, -1, -1):
        has_next = valid[:, t + 1] if t + 1 < T else torch.zeros_like(valid[:, t])
        blend = (1.0 - td_lambda) * q_next[:, t] + td_lambda * later
        cont = torch.where(has_next, blend, q_next[:, t])
        out[:, t] = rew[:, t] + gamma * not_done[:, t] * cont
        later = out[:, t]
    return out * valid.float()


def check_mixer(mixer: nn.Module, policy: MultiAgentQPolicy, name: str) -> None:
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


class QMIX(OffPolicyAlgorithm[MultiAgentQPolicy], LaggedNetworkFullUpdateAlgorithmMixin):
    """Recurrent QMIX (or VDN with a ``VDNMixer``) trained on whole episodes.

    Use it with an :class:`~bdps_agents.replay.EpisodeReplayBuffer`; ``batch_size`` in the
    trainer counts episodes. ``extra_trainable``: further modules the optimiser updates
    (subclasses' own mixers).
    """

    def __init__(
        self,
        *,
        policy: MultiAgentQPolicy,
        mixer: nn.Module,
        optim: OptimizerFactory | None = None,
        gamma: float = 0.99,
        td_lambda: float = 0.6,
        double_q: bool = True,
        target_update_interval: int = 200,
        max_grad_norm: float | None = 10.0,
        reward_scale: float = 1.0,
        extra_trainable: Sequence[nn.Module] = (),
    ) -> None:
        super().__init__(policy=policy)
        LaggedNetworkFullUpdateAlgorithmMixin.__init__(self)
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        if not 0.0 <= td_lambda <= 1.0:
            raise ValueError(f"td_lambda must be in [0, 1], got {td_lambda}")
        if target_update_interval < 1:
            raise ValueError(f"target_update_interval must be >= 1, got {target_update_interval}")
        check_mixer(mixer, policy, "mixer")
        self.mixer = mixer
        self.gamma, self.td_lambda, self.double_q = gamma, td_lambda, double_q
        self.target_update_interval = target_update_interval
        self.reward_scale = reward_scale
        self.optim = self._create_grad_norm_optimizer(
            nn.ModuleList([policy, mixer, *extra_trainable]),
            optim or AdamOptimizerFactory(lr=5e-4),
            max_grad_norm,
        )
        self.target_agent = self._add_lagged_network(policy.agent)
        self.target_mixer = self._add_lagged_network(mixer)
        self.num_updates = 0
        # set to a LearnerProcess to run the gradient steps in a child process, overlapping
        # with collection (training.overlap_learning; bdps_agents.learner_process)
        self.learner_process: LearnerProcess | None = None

    # -- state ----------------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        """What ``state_dict()`` carries besides tensors, so that a hand-built pipeline resumes
        exactly: the gradient-step count (it times the target-network copies) and the policy's
        random generators."""
        return {
            "num_updates": self.num_updates,
            "policy_generators": self.policy.generator_states(),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.num_updates = int(state["num_updates"])
        self.policy.set_generator_states(state["policy_generators"])

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        key = prefix + "_extra_state"
        if key not in state_dict and key in missing_keys:
            # written before the extra state existed: the caller restores the count, if at all
            missing_keys.remove(key)

    def update(self, buffer: ReplayBuffer, sample_size: int | None) -> TrainingStats:
        if self.learner_process is None:
            return super().update(buffer, sample_size)
        # sampling and batch assembly stay here (the buffer lives here); the step runs there
        # (the batches are the plain Batch objects of _preprocess_batch)
        submit = cast(Callable[[RolloutBatchProtocol], TrainingStats], self.learner_process.submit)
        return self._update(sample_size, buffer, submit)

    def _create_grad_norm_optimizer(
        self, module: nn.Module, factory: OptimizerFactory, max_grad_norm: float | None
    ) -> GradNormOptimizer:
        # as Algorithm._create_optimizer, so that state_dict() carries the optimiser state
        optimizer, lr_scheduler = factory.create_instances(module)
        if lr_scheduler is not None:
            self.lr_schedulers.append(lr_scheduler)
        wrapped = GradNormOptimizer(optimizer, module, max_grad_norm=max_grad_norm)
        self._optimizers.append(wrapped)
        return wrapped

    # -- batch assembly ---------------------------------------------------------------------------
    def _preprocess_batch(
        self, batch: RolloutBatchProtocol, buffer: ReplayBuffer, indices: np.ndarray
    ) -> RolloutBatchProtocol:
        if not isinstance(buffer, EpisodeReplayBuffer):
            raise TypeError(
                f"{type(self).__name__} trains on whole episodes and needs an EpisodeReplayBuffer, "
                f"got {type(buffer).__name__}"
            )
        # Tianshou types the batch as a protocol; the episode batch is a plain Batch
        if len(indices) == 0:  # no complete episode yet: skip this update
            return cast(RolloutBatchProtocol, Batch())
        return cast(RolloutBatchProtocol, buffer.episode_batch(indices))

    def episode_tensors(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Torch views of an episode batch, with agent inputs for steps 0..T."""
        obs = torch.as_tensor(batch.obs.obs, dtype=torch.float32)  # (B, T+1, n, d)
        act = torch.as_tensor(batch.act, dtype=torch.long)  # (B, T, n)
        mask = torch.as_tensor(batch.obs.mask).bool()  # (B, T+1, n, A)
        # padded steps have no available action; let argmax see all so nothing becomes NaN
        mask = mask | ~mask.any(-1, keepdim=True)
        B, T1, n, _ = obs.shape
        last = torch.zeros(B, T1, n, self.policy.n_actions)
        last[:, 1:] = nn.functional.one_hot(act, self.policy.n_actions).float()
        return {
            "inputs": self.policy.inputs(obs, last),
            "state": torch.as_tensor(batch.obs.state, dtype=torch.float32),  # (B, T+1, S)
            "act": act,
            "mask": mask,
            "rew": torch.as_tensor(batch.rew, dtype=torch.float32) * self.reward_scale,
            "terminated": torch.as_tensor(batch.terminated),
            "valid": torch.as_tensor(batch.valid),
        }

    # -- the update -----------------------------------------------------------------------------
    def agent_q_values(self, ep: dict[str, torch.Tensor], target: bool = False) -> torch.Tensor:
        """Per-agent Q-values ``(B, T+1, n, A)`` over the episode batch (online or target nets).

        The one place a sharing scheme enters the update: BDPS overrides it."""
        agent = self.target_agent if target else self.policy.agent
        return agent(ep["inputs"])

    def td_loss(self, ep: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        q = self.agent_q_values(ep)  # (B, T+1, n, A)
        with torch.no_grad():
            q_target = self.agent_q_values(ep, target=True)
        q_taken = q[:, :-1].gather(-1, ep["act"].unsqueeze(-1)).squeeze(-1)  # (B, T, n)
        q_tot = self.mixer(q_taken, ep["state"][:, :-1])  # (B, T)
        with torch.no_grad():
            chooser = q[:, 1:] if self.double_q else q_target[:, 1:]
            a_next = masked_argmax(chooser, ep["mask"][:, 1:])
            q_next = q_target[:, 1:].gather(-1, a_next.unsqueeze(-1)).squeeze(-1)
            q_tot_next = self.target_mixer(q_next, ep["state"][:, 1:])
            y = td_lambda_targets(
                ep["rew"], ep["terminated"], ep["valid"], q_tot_next, self.gamma, self.td_lambda
            )
        valid = ep["valid"].float()
        loss = ((q_tot - y) ** 2 * valid).sum() / valid.sum()
        n_valid = valid.sum().item()
        stats = {
            "q_taken_mean": (q_tot.detach() * valid).sum().item() / n_valid,
            "target_mean": (y * valid).sum().item() / n_valid,
        }
        return loss, stats

    def _update_with_batch(self, batch: Batch) -> QMIXTrainingStats:  # type: ignore[override]
        if len(batch.get_keys()) == 0:
            return QMIXTrainingStats()
        loss, stats = self.td_loss(self.episode_tensors(batch))
        self.check_finite({"Q-values (agent network)": stats["q_taken_mean"], "TD loss": loss})
        grad_norm = self.step(loss)
        return QMIXTrainingStats(
            loss=loss.item(),
            td_loss=loss.item(),
            grad_norm=grad_norm,
            q_taken_mean=stats["q_taken_mean"],
            target_mean=stats["target_mean"],
        )

    def check_finite(self, values: dict[str, torch.Tensor | float]) -> None:
        """Stop before a non-finite value reaches the optimiser: raise :class:`NonFiniteError`
        naming the first bad component (in the order given) and the update number."""
        for name, value in values.items():
            value = torch.as_tensor(value).detach()
            if not torch.isfinite(value).all():
                raise NonFiniteError(
                    f"non-finite {name} ({float(value.mean())}) in update "
                    f"{self.num_updates + 1}; no optimiser step was taken"
                )

    def step(self, loss: torch.Tensor) -> float:
        """One optimiser step; copies to the target networks every ``target_update_interval``."""
        grad_norm = self.optim.step(loss)
        self.num_updates += 1
        if self.num_updates % self.target_update_interval == 0:
            self._update_lagged_network_weights()
        return grad_norm
