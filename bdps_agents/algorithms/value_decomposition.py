"""The value-decomposition learner every registered algorithm shares (Tianshou 2.0.1
``OffPolicyAlgorithm``), with hooks where methods differ.

One update, top to bottom (``_update_with_batch``):

1. sample B whole episodes (``EpisodeReplayBuffer``), padded to T steps with a ``valid`` mask
   (``episode_tensors``; a method adds what it replays, e.g. BDPS's roles and groups);
2. agent inputs for steps 0..T (step T+1 of an episode is the observation after its last action);
3. **hook** ``agent_q_values``: unroll the online and the target agent networks over the
   sequences from zero hidden states -> per-agent Q ``(B, T+1, n, A)`` plus whatever the method
   needs later (``AgentQ.extras``: BDPS's Q^U, Q^V, h^U);
4. Q_tot(s_t, a_t) = mixer(Q_i(τ_i, a_i), s_t) (QMIX's monotonic mixer, VDN's sum, ...; QPLEX
   also reads a_t and max_a Q_i: ``bdps_agents.networks.mixer.mixer_action_inputs``);
5. target: double-Q action a' = argmax_online Q(τ', ·) among available actions, evaluated by the
   target networks: Q_tot'(s_{t+1}) = target_mixer(Q̄_i(τ', a'), s_{t+1});
6. y_t = r_t + γ(1 − terminated_t)·Q_tot'(s_{t+1}), or its TD(λ) mixture (``td_lambda_targets``);
   truncated episodes still bootstrap; **hook** ``td_rewards``: the r_t used (CDS: r + β·r_int);
7. L_TD = masked mean of (Q_tot − y)²;
8. **hook** ``auxiliary_losses``: weighted extra losses (BDPS: L_U, Eq. 7, and L_V, Eq. 8);
   **hook** ``diagnostics``: numbers to log (BDPS: ΔH, Eq. 10);
9. every loss is checked to be finite, then one Adam step on L_TD + Σ w·L with gradient
   clipping; the target networks are copied every ``target_update_interval`` updates.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import (
    LaggedNetworkFullUpdateAlgorithmMixin,
    OffPolicyAlgorithm,
    TrainingStats,
)
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data import Batch, ReplayBuffer
from tianshou.data.types import RolloutBatchProtocol
from torch import nn

from bdps_agents.algorithms.optim import FusedAdamOptimizerFactory, GradNormOptimizer
from bdps_agents.algorithms.td_targets import td_lambda_targets
from bdps_agents.algorithms.update_stats import (
    AgentQ,
    AuxiliaryLoss,
    NonFiniteError,
    ValueDecompositionStats,
)
from bdps_agents.device import host_to_device, module_device
from bdps_agents.learner_process import DeviceLearner, LearnerProcess
from bdps_agents.networks.mixer import check_mixer, mixer_action_inputs
from bdps_agents.policy import MultiAgentQPolicy, masked_argmax
from bdps_agents.replay import EpisodeReplayBuffer


class ValueDecomposition(
    OffPolicyAlgorithm[MultiAgentQPolicy], LaggedNetworkFullUpdateAlgorithmMixin
):
    """Recurrent value decomposition trained on whole episodes: Q_tot = mixer(Q_1..Q_n, s).

    Use it with an :class:`~bdps_agents.replay.EpisodeReplayBuffer`; ``batch_size`` in the
    trainer counts episodes. ``extra_trainable``: further modules the optimiser updates
    (subclasses' own mixers). Subclasses override the hooks ``episode_tensors``,
    ``agent_q_values``, ``auxiliary_losses``, ``diagnostics`` and ``td_rewards``, not the update.
    """

    # how non-finite agent Q-values are reported (a method names its networks)
    q_values_label = "Q-values (agent network)"
    # the statistics of an update: a subclass declares its own values as fields
    stats_class: type[ValueDecompositionStats] = ValueDecompositionStats

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
            optim or FusedAdamOptimizerFactory(lr=5e-4),
            max_grad_norm,
        )
        self.target_agent = self._add_lagged_network(policy.agent)
        self.target_mixer = self._add_lagged_network(mixer)
        self.num_updates = 0
        # where the gradient steps run when not here: a LearnerProcess (a child process,
        # overlapping with collection: training.overlap_learning) or a DeviceLearner (a copy
        # on a GPU: training.device); bdps_agents.learner_process
        self.remote_learner: LearnerProcess | DeviceLearner | None = None
        self._warned_no_episode = False  # update() on a buffer without a whole episode

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
        if self.remote_learner is None:
            return super().update(buffer, sample_size)
        # sampling and batch assembly stay here (the buffer lives here); the step runs there
        # (the batches are the plain Batch objects of _preprocess_batch)
        submit = cast(Callable[[RolloutBatchProtocol], TrainingStats], self.remote_learner.submit)
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
        if len(indices) == 0:  # a partial episode is never replayed: nothing to learn from
            # skipped, as a trainer without a warm-up asks for updates before the first episode
            # ends; said once, since the stats' loss=None is easy to miss
            if not self._warned_no_episode:
                self._warned_no_episode = True
                warnings.warn(
                    f"{type(self).__name__}.update() skipped (loss=None): the replay buffer holds "
                    f"no complete episode yet ({len(buffer)} steps of unfinished ones); warm up "
                    "with bdps_agents.pipeline.warmup(collector, n_episode=...) first",
                    stacklevel=4,
                )
            return cast(RolloutBatchProtocol, Batch())
        batch = buffer.episode_batch(indices)
        return cast(RolloutBatchProtocol, batch)

    @property
    def device(self) -> torch.device:
        """Where this algorithm's networks are, and so where its update builds its tensors."""
        return module_device(self.policy)

    def to_device(self, array: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A host array of the episode batch as a tensor on :attr:`device` (once per update)."""
        return host_to_device(array, self.device, dtype)

    def episode_tensors(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Torch views of an episode batch, with agent inputs for steps 0..T."""
        obs = self.to_device(batch.obs.obs, torch.float32)  # (B, T+1, n, d)
        act = self.to_device(batch.act, torch.long)  # (B, T, n)
        mask = self.to_device(batch.obs.mask).bool()  # (B, T+1, n, A)
        # padded steps have no available action; let argmax see all so nothing becomes NaN
        mask = mask | ~mask.any(-1, keepdim=True)
        B, T1, n, _ = obs.shape
        last = obs.new_zeros(B, T1, n, self.policy.n_actions)
        last[:, 1:] = nn.functional.one_hot(act, self.policy.n_actions).float()
        return {
            "inputs": self.policy.inputs(obs, last),
            "obs": obs,  # (B, T+1, n, d): the observations alone (RODE's and SePS's models)
            "state": self.to_device(batch.obs.state, torch.float32),  # (B, T+1, S)
            "act": act,
            "mask": mask,
            "rew": self.to_device(batch.rew, torch.float32) * self.reward_scale,
            "terminated": self.to_device(batch.terminated),
            "valid": self.to_device(batch.valid),
        }

    # -- hooks ----------------------------------------------------------------------------------
    def agent_q_values(self, ep: dict[str, torch.Tensor], target: bool = False) -> AgentQ:
        """Per-agent Q-values ``(B, T+1, n, A)`` over the episode batch (online or target
        networks): the one place a sharing scheme enters the update."""
        agent = self.target_agent if target else self.policy.agent
        return AgentQ(agent(ep["inputs"]))

    def auxiliary_losses(self, ep: dict[str, torch.Tensor], online: AgentQ) -> list[AuxiliaryLoss]:
        """A method's extra losses, computed after L_TD from the same online unroll."""
        return []

    def diagnostics(self, ep: dict[str, torch.Tensor], online: AgentQ) -> dict[str, float]:
        """Numbers to log with the update, computed before the optimiser step (no gradient)."""
        return {}

    def td_rewards(self, ep: dict[str, torch.Tensor], online: AgentQ) -> torch.Tensor:
        """The rewards ``(B, T)`` of the TD targets, under no_grad (CDS adds β·r_int)."""
        return ep["rew"]

    # -- the update -----------------------------------------------------------------------------
    def td_loss(
        self,
        ep: dict[str, torch.Tensor],
        online: AgentQ | None = None,
        target: AgentQ | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_TD of the mixed Q-values (steps 4-7); unrolls the networks if not given. The
        statistics are sums over the valid steps, as 0-dim tensors (``q_taken_sum``,
        ``target_sum``, ``valid_steps``): read together with the rest (one host sync)."""
        online = online or self.agent_q_values(ep)
        q = online.q  # (B, T+1, n, A)
        if target is None:
            with torch.no_grad():
                target = self.agent_q_values(ep, target=True)
        q_target = target.q
        q_taken = q[:, :-1].gather(-1, ep["act"].unsqueeze(-1)).squeeze(-1)  # (B, T, n)
        # a mixer that reads actions (QPLEX) gets a_t one-hot and max_a Q_i(τ_t, a) too
        acted = mixer_action_inputs(self.mixer, q[:, :-1], ep["act"], ep["mask"][:, :-1])
        q_tot = self.mixer(q_taken, ep["state"][:, :-1], **acted)  # (B, T)
        with torch.no_grad():
            chooser = q[:, 1:] if self.double_q else q_target[:, 1:]
            a_next = masked_argmax(chooser, ep["mask"][:, 1:])
            q_next = q_target[:, 1:].gather(-1, a_next.unsqueeze(-1)).squeeze(-1)
            # ... and at the target, a' one-hot and the max of the target Q (asked of the online
            # mixer: the target's lagged-network wrapper hides the mixer's attributes)
            chosen = mixer_action_inputs(self.mixer, q_target[:, 1:], a_next, ep["mask"][:, 1:])
            q_tot_next = self.target_mixer(q_next, ep["state"][:, 1:], **chosen)
            rew = self.td_rewards(ep, online)
            y = td_lambda_targets(
                rew, ep["terminated"], ep["valid"], q_tot_next, self.gamma, self.td_lambda
            )
        valid = ep["valid"].float()
        n_valid = valid.sum()
        loss = ((q_tot - y) ** 2 * valid).sum() / n_valid
        stats = {
            "q_taken_sum": (q_tot.detach() * valid).sum(),
            "target_sum": (y * valid).sum(),
            "valid_steps": n_valid,
        }
        return loss, stats

    def _update_with_batch(self, batch: Batch) -> ValueDecompositionStats:  # type: ignore[override]
        if len(batch.get_keys()) == 0:
            return self.stats_class()
        ep = self.episode_tensors(batch)
        online = self.agent_q_values(ep)
        with torch.no_grad():
            target = self.agent_q_values(ep, target=True)
        td, sums = self.td_loss(ep, online, target)
        auxiliary = self.auxiliary_losses(ep, online)
        loss = td
        for aux in auxiliary:
            loss = loss + aux.weight * aux.value
        # the update's one host sync for its core statistics and the finiteness check
        q_sum, y_sum, n_valid, loss_value, td_value, *aux_values = (
            torch.stack(
                [
                    sums["q_taken_sum"],
                    sums["target_sum"],
                    sums["valid_steps"],
                    loss.detach(),
                    td.detach(),
                    *(aux.value.detach() for aux in auxiliary),
                ]
            )
            .double()
            .tolist()
        )  # double: exact for any float dtype the values have
        q_taken_mean = q_sum / n_valid
        extras: dict[str, float] = {}
        for aux, value in zip(auxiliary, aux_values, strict=True):
            extras[aux.name] = value
            extras.update(aux.stats)
        extras.update(self.diagnostics(ep, online))
        self.check_finite(
            {
                self.q_values_label: q_taken_mean,
                "TD loss": td_value,
                **{aux.label: value for aux, value in zip(auxiliary, aux_values, strict=True)},
            }
        )
        grad_norm = self.step(loss)
        return self.stats_class.of(
            extras,
            loss=loss_value,
            td_loss=td_value,
            grad_norm=grad_norm,
            q_taken_mean=q_taken_mean,
            target_mean=y_sum / n_valid,
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
