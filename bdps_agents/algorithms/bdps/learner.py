"""BDPS: bi-level dynamic parameter sharing (paper Sec. 3) on the value-decomposition learner.

Acting (``BDPSPolicy.forward``), per env step t of an episode:

0. at t = 0 there is no advantage history: agent i starts in role i mod k;
1. every T_U steps (t % T_U == 0, t > 0) the role selector U reads each agent's last T_U
   advantage vectors A = max Q − Q (standardised), encodes them (GRU → VAE) and sets
   role u = argmax z (Eq. 3): z sampled while training, z = μ in test episodes;
2. every T_V = e·T_U steps (t = 0 included) the group selector V maps one-hot roles [‖ the
   agent's id or h^U, ``group_input``] → MLP → GAT (heads = k, alive agents only) → GRU →
   group Q-values and picks groups ε-greedily                                    (Eq. 4, 5);
3. agent i's Q-values come from role network u_i (k networks, stacked) and, in ``bilevel`` mode,
   group network v_i (m networks) whose input also holds the role network's hidden state h^U:
   Q = Q^U + Q^V                                                                 (Eq. 6);
4. masked ε-greedy action; the new advantage vector enters the window.

Training (the shared learner's update, ``ValueDecomposition._update_with_batch``, through its
hooks) replays the roles and groups chosen while acting:
L = L_TD (Eq. 9, Q = Q^U + Q^V mixed by QMIX: ``agent_q_values``) + w_U·L_U (VAE, Eq. 7) +
w_V·L_V (group selector as an RL task over T_V-step rewards with its own mixer and target
networks, Eq. 8) (``auxiliary_losses``); ΔH (Eq. 10) is a ``diagnostics`` value.
``bdps.levels: 1`` is the single-level ablation: roles only, Q = Q^U, no L_V.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import torch
from tianshou.data import Batch
from torch import nn

from bdps_agents.algorithms.assignments import partition_argmax
from bdps_agents.algorithms.bdps.diagnostics import masked_advantage, scaled_entropy_gap
from bdps_agents.algorithms.bdps.policy import BDPSPolicy
from bdps_agents.algorithms.decisions import DecisionSteps, assignment_stats, replayed_assignment
from bdps_agents.algorithms.value_decomposition import (
    AgentQ,
    AuxiliaryLoss,
    ValueDecomposition,
    ValueDecompositionStats,
)
from bdps_agents.networks.group_selector import GroupSelector
from bdps_agents.networks.mixer import check_mixer


@dataclass(kw_only=True)
class BDPSTrainingStats(ValueDecompositionStats):
    overflow: ClassVar[str] = "assignments"

    role_loss: float | None = None
    vae_mse: float | None = None
    vae_kl: float | None = None
    group_loss: float | None = None
    delta_h: float | None = None
    # information diagnostics (docs/algorithm.md, "Diagnostics"): each has a no-information value
    role_recon_ratio: float | None = None  # 1
    role_latent_snr: float | None = None  # 0
    roles_per_env: float | None = None  # 1 (every alive agent of an env in one role)
    groups_per_env: float | None = None  # 1
    role_switch_rate: float | None = None
    role_switch_rate_indep: float | None = None  # the switch rate of independent draws
    group_switch_rate: float | None = None
    group_switch_rate_indep: float | None = None
    # per-role / per-group assignment fractions (logged as assignments/role_0_frac, ...)
    assignments: dict[str, float] = field(default_factory=dict)


class BDPS(ValueDecomposition):
    """The BDPS learner: QMIX's TD loss on Q = Q^U + Q^V, plus L_U and L_V.

    :param group_mixer: QMIX mixer of the group selector's Q-values (Eq. 8); None in the
        single-level ``individual`` mode.
    :param kl_weight: λ of Eq. 7.
    :param role_loss_weight, group_loss_weight: weights of L_U and L_V in the total loss.
    """

    policy: BDPSPolicy
    q_values_label = "Q-values (role and group networks)"
    stats_class = BDPSTrainingStats

    def __init__(
        self,
        *,
        policy: BDPSPolicy,
        mixer: nn.Module,
        group_mixer: nn.Module | None = None,
        kl_weight: float = 0.01,
        role_loss_weight: float = 1.0,
        group_loss_weight: float = 1.0,
        **learner_kwargs: Any,
    ) -> None:
        if policy.bilevel != (group_mixer is not None):
            raise ValueError("a group_mixer is needed exactly in bilevel mode")
        if group_mixer is not None:
            check_mixer(group_mixer, policy, "group_mixer")
        extra = [group_mixer] if group_mixer is not None else []
        super().__init__(policy=policy, mixer=mixer, extra_trainable=extra, **learner_kwargs)
        self.group_mixer = group_mixer
        self.kl_weight = kl_weight
        self.role_loss_weight, self.group_loss_weight = role_loss_weight, group_loss_weight
        if policy.bilevel:
            # bilevel: the policy checked that its group level is complete, and group_mixer
            # was required above
            assert policy.group_agent is not None and policy.group_selector is not None
            assert group_mixer is not None
            self.target_group_agent = self._add_lagged_network(policy.group_agent)
            self.target_group_selector = self._add_lagged_network(policy.group_selector)
            self.target_group_mixer = self._add_lagged_network(group_mixer)

    # -- batch ------------------------------------------------------------------------------
    def episode_tensors(self, batch: Batch) -> dict[str, torch.Tensor]:
        need = ["role", "group"] if self.policy.bilevel else ["role"]
        stored = set(batch.get("policy", Batch()).get_keys())
        if not set(need) <= stored:
            raise ValueError(
                f"the sampled episodes carry no stored {' and '.join(need)} (they hold "
                f"{sorted(stored) or 'no policy outputs'}): BDPS replays the assignments chosen "
                "while acting, so every episode must be collected by the BDPSPolicy. "
                "collect(random=True) bypasses it: prefill with bdps_agents.pipeline.warmup"
            )
        ep = super().episode_tensors(batch)
        lengths = self.to_device(batch.lengths)
        ep["role"] = replayed_assignment(batch.policy.role, lengths)
        if self.policy.bilevel:
            ep["group"] = replayed_assignment(batch.policy.group, lengths)
        ep["alive"] = self.to_device(batch.obs.alive).bool()  # (B, T+1, n)
        ep["lengths"] = lengths
        return ep

    # -- Eq. 6 over the episode batch ---------------------------------------------------------
    def agent_q_values(self, ep: dict[str, torch.Tensor], target: bool = False) -> AgentQ:
        """Q = Q^U + Q^V of the replayed roles and groups; ``extras`` holds q_u, q_v, h_u."""
        policy = self.policy
        agent = self.target_agent if target else policy.agent
        q_u, h_u = agent(ep["inputs"], index=ep["role"], return_hidden=True)
        if not policy.bilevel:
            q = q_u
            q_v = torch.zeros_like(q_u)
        else:
            assert policy.group_agent is not None  # bilevel
            group_agent = self.target_group_agent if target else policy.group_agent
            q_v = group_agent(torch.cat([ep["inputs"], h_u], -1), index=ep["group"])
            q = q_u + q_v
        return AgentQ(q, {"q_u": q_u, "q_v": q_v, "h_u": h_u})

    # -- Eq. 7 ----------------------------------------------------------------------------------
    def role_loss(self, ep: dict[str, torch.Tensor], q: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """VAE loss on the advantage windows that preceded each role decision t = j·T_U, j ≥ 1,
        of agents alive at t (the roles at t = 0 are fixed, not chosen from a window).

        Advantages are recomputed from the current (detached) Q-values; the running scale of
        the windows is updated from the same windows first. Also returns the role statistics
        (:func:`assignment_stats` of the replayed roles, ``RoleSelector.information``)."""
        T_U = self.policy.role_interval
        T = ep["act"].shape[1]
        n_windows = (T - 1) // T_U  # decisions at T_U, 2T_U, ... that lie before step T
        zero = q.new_zeros(())
        if n_windows == 0:
            return zero, {"vae_mse": 0.0, "vae_kl": 0.0}
        selector = self.policy.role_selector
        adv = masked_advantage(q[:, :T].detach(), ep["mask"][:, :T])  # (B, T, n, A)
        windows = adv[:, : n_windows * T_U].unflatten(1, (n_windows, T_U))  # (B, J, T_U, n, A)
        windows = windows.permute(0, 1, 3, 2, 4)  # (B, J, n, T_U, A)
        decision = torch.arange(1, n_windows + 1, device=q.device) * T_U
        inside = decision[None] < ep["lengths"][:, None]  # (B, J) decision inside the episode
        counts = inside[:, :, None] & ep["alive"][:, decision]  # (B, J, n) and agent alive
        flat, weight = windows.flatten(0, 2), counts.flatten().float()
        stats: dict[str, float] = assignment_stats(
            "role", ep["role"][:, decision], counts, selector.n_roles
        )
        if not counts.any():
            return zero, {"vae_mse": 0.0, "vae_kl": 0.0, **stats}
        selector.update_scale(flat, weight)
        out = selector(flat, sample=True, generator=self.policy.torch_rng)
        total, mse, kl = selector.loss(flat, out, self.kl_weight, weight=weight)
        stats.update(selector.information(flat, out, weight))
        return total, {"vae_mse": mse.item(), "vae_kl": kl.item(), **stats}

    # -- Eq. 8 ----------------------------------------------------------------------------------
    def group_loss(self, ep: dict[str, torch.Tensor], online: AgentQ) -> tuple[torch.Tensor, dict]:
        """TD loss of the group selector on T_V-step reward sums (RODE-style extra RL task).

        Decision j happens at step τ_j = j·T_V while τ_j < L. Its target is the reward summed
        over [τ_j, τ_j + T_V) plus γ·Q̄^V_tot at the next decision — or, for the interval holding
        the episode end, at the observation after the last step (0 if terminated). Per-agent
        features (``BDPSPolicy.group_features``) are read at τ_j: h^U entering τ_j (zeros at
        τ = 0), or the agent's id."""
        policy = self.policy
        T_V = policy.group_interval
        group_selector, group_mixer = policy.group_selector, self.group_mixer
        if T_V is None or group_selector is None or group_mixer is None:
            raise ValueError("group_loss needs bilevel sharing (a group level)")
        dec = DecisionSteps.of(ep["lengths"], ep["act"].shape[1], T_V)
        J, at = dec.count, dec.at
        roles, alive, state = at(ep["role"]), at(ep["alive"]), at(ep["state"])
        h_u = online.extras["h_u"].detach()  # (B, T+1, n, H): h^U after step t
        h_enter = torch.cat([torch.zeros_like(h_u[:, :1]), h_u[:, :-1]], 1)
        features = policy.group_features(at(h_enter))
        q_sel, _ = group_selector.unroll(roles, alive, features=features)  # (B, J+1, n, m)
        chosen = q_sel[:, :J].gather(-1, at(ep["group"])[:, :J, :, None]).squeeze(-1)
        q_tot = group_mixer(chosen, state[:, :J])  # (B, J)
        with torch.no_grad():
            # the lagged wrapper exposes only forward; its .module is the eval-mode copy
            target_selector = cast(GroupSelector, self.target_group_selector.module)
            q_sel_target, _ = target_selector.unroll(roles, alive, features=features)
            chooser = q_sel if self.double_q else q_sel_target  # as the TD loss chooses
            if policy.group_choice == "partition":  # the best next assignment acting could make
                best = partition_argmax(chooser[:, 1:], alive[:, 1:])[..., None]
            else:
                best = chooser[:, 1:].argmax(-1, keepdim=True)
            q_next = q_sel_target[:, 1:].gather(-1, best).squeeze(-1)
            v_next = self.target_group_mixer(q_next, state[:, 1:])  # (B, J)
            y = dec.targets(ep["rew"], ep["terminated"], v_next, self.gamma)
        valid = dec.valid
        w = valid.float()
        loss = ((q_tot - y) ** 2 * w).sum() / w.sum()
        counts = valid[:, :, None] & alive[:, :J]
        stats = assignment_stats("group", at(ep["group"])[:, :J], counts, group_selector.n_groups)
        return loss, stats

    # -- the shared learner's hooks --------------------------------------------------------------
    def auxiliary_losses(self, ep: dict[str, torch.Tensor], online: AgentQ) -> list[AuxiliaryLoss]:
        """L_U (Eq. 7) and, bi-level, L_V (Eq. 8), with the role and group statistics."""
        l_u, u_stats = self.role_loss(ep, online.q)
        losses = [
            AuxiliaryLoss(
                "role_loss", "VAE loss (role selector, Eq. 7)", l_u, self.role_loss_weight, u_stats
            )
        ]
        if self.policy.bilevel:
            l_v, v_stats = self.group_loss(ep, online)
            losses.append(
                AuxiliaryLoss(
                    "group_loss",
                    "group selector loss (Eq. 8)",
                    l_v,
                    self.group_loss_weight,
                    v_stats,
                )
            )
        return losses

    def diagnostics(self, ep: dict[str, torch.Tensor], online: AgentQ) -> dict[str, float]:
        """ΔH (Eq. 10) of the two levels over alive agent-steps (bi-level only)."""
        if not self.policy.bilevel:
            return {}
        T = ep["act"].shape[1]
        q_u, q_v = online.extras["q_u"], online.extras["q_v"]
        agent_steps = ep["valid"][..., None] & ep["alive"][:, :T]
        delta_h = scaled_entropy_gap(
            q_u[:, :T].detach(), q_v[:, :T].detach(), ep["mask"][:, :T], agent_steps
        )
        return {"delta_h": delta_h}
