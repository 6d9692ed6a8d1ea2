"""BDPS: bi-level dynamic parameter sharing (paper Sec. 3) on the recurrent QMIX learner.

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

Training (``BDPS._update_with_batch``) replays the roles and groups chosen while acting:
L = L_TD (Eq. 9, via QMIX with Q = Q^U + Q^V) + w_U·L_U (VAE, Eq. 7) + w_V·L_V (group selector
as an RL task over T_V-step rewards with its own mixer and target networks, Eq. 8).
``sharing="individual"`` is the single-level ablation: roles only, Q = Q^U, no L_V.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from tianshou.data import Batch
from torch import nn
from torch.nn import functional as F

from bdps_agents.config import check_sharing_sizes
from bdps_agents.networks.agent import RecurrentAgent
from bdps_agents.networks.group_selector import GroupSelector
from bdps_agents.networks.role_selector import RoleSelector
from bdps_agents.policy import MultiAgentQPolicy, masked_argmax, random_available
from bdps_agents.qmix import QMIX, QMIXTrainingStats, check_mixer


def masked_advantage(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A = max_a Q − Q over available actions (≥ 0); 0 for unavailable actions (Sec. 3.1.1)."""
    best = q.masked_fill(~mask, float("-inf")).max(-1, keepdim=True).values
    return torch.where(mask, best - q, torch.zeros_like(q))


def masked_entropy(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(Q) over available actions (the p of Eq. 10)."""
    logp = torch.log_softmax(q.masked_fill(~mask, float("-inf")), dim=-1)
    return -(logp.exp() * logp.masked_fill(~mask, 0.0)).sum(-1)


GROUP_INPUTS = ("roles", "roles+id", "roles+trajectory")


def group_feature_dim(group_input: str, n_agents: int, hidden_dim: int) -> int:
    """Per-agent features the group selector reads besides the role, for ``group_input``:
    none, a one-hot agent id, or the role network's hidden state h^U."""
    if group_input not in GROUP_INPUTS:
        raise ValueError(f"group_input must be one of {GROUP_INPUTS}, got {group_input!r}")
    return {"roles": 0, "roles+id": n_agents, "roles+trajectory": hidden_dim}[group_input]


class BDPSPolicy(MultiAgentQPolicy):
    """Acting with role and group selectors; roles/groups go to the buffer via ``policy``.

    ``agent`` holds the k role networks; ``group_agent`` the m group networks (``None`` in the
    single-level ``individual`` mode); ``group_selector`` likewise.
    """

    def __init__(
        self,
        *,
        role_selector: RoleSelector,
        role_interval: int,
        group_agent: RecurrentAgent | None = None,
        group_selector: GroupSelector | None = None,
        group_interval: int | None = None,
        sample_roles_at_test: bool = False,
        group_input: str = "roles",
        episode_limit: int | None = None,
        **policy_kwargs: Any,
    ) -> None:
        """``policy_kwargs`` are :class:`MultiAgentQPolicy`'s (``agent`` = the k role networks,
        ``RecurrentAgent(..., groups=k)``).

        ``group_agent``: the m group networks, ``RecurrentAgent(inputs.dim + agent.hidden_dim,
        n_actions, groups=m)`` (they also read h^U); with ``group_selector`` and
        ``group_interval`` T_V = e·T_U for bilevel sharing, all three None for single level.
        ``sample_roles_at_test``: sample z outside training steps too (default: z = μ, so a
        checkpoint evaluated twice on the same env seeds gives the same return).
        ``group_input``: what the group selector reads besides one-hot roles: nothing
        (``roles``), the agent's one-hot id (``roles+id``) or its role network's hidden state
        h^U entering the decision step, detached (``roles+trajectory``).
        ``episode_limit``: the most steps of an episode (``JointEnv.episode_limit``); T_U and
        T_V must lie below it (Def. 1). Unknown (None): stated in a warning.

        Every size relation is checked here (``ValueError`` naming the argument)."""
        super().__init__(**policy_kwargs)
        self._check_bdps_sizes(
            role_selector, role_interval, group_agent, group_selector, group_interval, group_input
        )
        self.bilevel = group_agent is not None
        check_sharing_sizes(
            n_agents=self.n_agents,
            n_roles=role_selector.n_roles,
            n_groups=group_selector.n_groups if group_selector is not None else None,
            role_interval=role_interval,
            group_interval=group_interval if self.bilevel else None,
            episode_limit=episode_limit,
            names={
                "n_roles": "role_selector.n_roles",
                "n_groups": "group_selector.n_groups",
                "role_interval": "role_interval (T_U)",
                "group_interval": "group_interval (T_V)",
            },
        )
        self.role_selector = role_selector
        self.group_agent = group_agent
        self.group_selector = group_selector
        self.role_interval = role_interval
        self.group_interval = group_interval if self.bilevel else None
        self.sample_roles_at_test = sample_roles_at_test
        self.group_input = group_input
        self.episode_limit = episode_limit
        # roles before any advantage history exists (t = 0): a fixed spread over the k roles
        self.initial_roles = np.arange(self.n_agents) % role_selector.n_roles
        seed = policy_kwargs.get("seed")
        self.torch_rng = torch.Generator()
        if seed is None:  # like the numpy generator of an unseeded policy: fresh entropy
            self.torch_rng.seed()
        else:
            self.torch_rng.manual_seed(seed)

    @staticmethod
    def _check_sharing(agent: RecurrentAgent, n_agents: int) -> None:
        pass  # role networks: checked against the role selector in _check_bdps_sizes

    def _check_bdps_sizes(
        self,
        role_selector: RoleSelector,
        role_interval: int,
        group_agent: RecurrentAgent | None,
        group_selector: GroupSelector | None,
        group_interval: int | None,
        group_input: str,
    ) -> None:
        k, A = role_selector.n_roles, self.n_actions
        if self.agent.groups != k:
            raise ValueError(
                f"agent has {self.agent.groups} role networks (groups) but role_selector.n_roles "
                f"is k={k}: build RecurrentAgent(..., groups={k})"
            )
        if role_selector.window != role_interval:
            raise ValueError(
                f"role_selector.window ({role_selector.window}) must equal role_interval T_U "
                f"({role_interval}): it encodes the last T_U advantage vectors"
            )
        if role_selector.n_actions != A:
            raise ValueError(f"role_selector.n_actions ({role_selector.n_actions}) must be {A}")
        if (group_agent is None) != (group_selector is None) or (group_agent is None) != (
            group_interval is None
        ):
            raise ValueError(
                "group_agent, group_selector and group_interval go together (bilevel mode) or "
                "are all None (single level)"
            )
        if group_agent is None or group_selector is None or group_interval is None:
            return
        if group_interval % role_interval:
            raise ValueError(
                f"group_interval T_V ({group_interval}) must be a multiple e*T_U of "
                f"role_interval T_U ({role_interval})"
            )
        m = group_selector.n_groups
        if group_agent.groups != m:
            raise ValueError(
                f"group_agent has {group_agent.groups} group networks (groups) but "
                f"group_selector.n_groups is m={m}: build RecurrentAgent(..., groups={m})"
            )
        if group_selector.n_roles != k:
            raise ValueError(
                f"group_selector.n_roles ({group_selector.n_roles}) must equal "
                f"role_selector.n_roles ({k})"
            )
        need_in = self.inputs.dim + self.agent.hidden_dim
        if group_agent.input_dim != need_in:
            raise ValueError(
                f"group_agent.input_dim ({group_agent.input_dim}) must be inputs.dim + "
                f"agent.hidden_dim = {self.inputs.dim} + {self.agent.hidden_dim} = {need_in} "
                "(group networks also read the role network's hidden state h^U)"
            )
        if group_agent.n_actions != A:
            raise ValueError(f"group_agent.n_actions ({group_agent.n_actions}) must be {A}")
        need = group_feature_dim(group_input, self.n_agents, self.agent.hidden_dim)
        if group_selector.agent_feature_dim != need:
            raise ValueError(
                f"group_input {group_input!r} gives {need} features per agent; "
                f"group_selector.agent_feature_dim is {group_selector.agent_feature_dim}"
            )

    def seed(self, seed: int) -> None:
        super().seed(seed)
        self.torch_rng.manual_seed(seed)

    def torch_generators(self) -> dict[str, torch.Generator]:
        return {"torch": self.torch_rng}  # role sampling (acting) and the VAE's (learning)

    def generator_states(self) -> dict[str, Any]:
        return {**super().generator_states(), "torch": self.torch_rng.get_state()}

    def set_generator_states(self, states: dict[str, Any]) -> None:
        super().set_generator_states(states)
        if "torch" in states:
            self.torch_rng.set_state(states["torch"])

    def group_features(self, h_u: torch.Tensor) -> torch.Tensor | None:
        """The group selector's per-agent input besides the role, from h^U ``(..., n, H)``
        entering the decision step: None, one-hot ids or h^U itself (``group_input``)."""
        if self.group_input == "roles+id":
            eye = torch.eye(self.n_agents, dtype=h_u.dtype, device=h_u.device)
            return eye.expand(*h_u.shape[:-1], self.n_agents)
        if self.group_input == "roles+trajectory":
            return h_u.detach()
        return None

    def initial_state(self, batch_size: int) -> Batch:
        """QMIX's state (with the step counter ``t``) plus advantage window, assignments and
        the group level's hidden states; all zero, as the Collector resets them at episode
        ends."""
        R, n, A = batch_size, self.n_agents, self.n_actions
        state = super().initial_state(batch_size)
        state.adv = np.zeros((R, n, self.role_interval, A), dtype=np.float32)
        state.role = np.zeros((R, n), dtype=np.int64)
        if self.bilevel:
            assert self.group_agent is not None and self.group_selector is not None  # bilevel
            state.h_group = np.zeros((R, n, self.group_agent.hidden_dim), dtype=np.float32)
            state.h_selector = np.zeros((R, n, self.group_selector.hidden_dim), dtype=np.float32)
            state.group = np.zeros((R, n), dtype=np.int64)
        return state

    def bilevel_q(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        role: torch.Tensor,
        h_group: torch.Tensor | None,
        group: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One step of Eq. 6: (Q = Q^U [+ Q^V], new h^U, new h^V)."""
        q_u, h = self.agent.step(x, h, role)
        if not self.bilevel:
            return q_u, h, None
        if self.group_agent is None or h_group is None:
            raise ValueError("bilevel_q in bilevel mode needs the group level's h_group")
        q_v, h_group = self.group_agent.step(torch.cat([x, h], -1), h_group, group)
        return q_u + q_v, h, h_group

    def forward(self, batch: Batch, state: Any | None = None, **kwargs: Any) -> Batch:
        obs = batch.obs
        mask_np = np.asarray(obs.mask).astype(bool)
        R = mask_np.shape[0]
        if state is None or not isinstance(state, Batch) or len(state.get_keys()) == 0:
            state = self.initial_state(R)
        eps = self.current_eps
        t = np.asarray(state.t)
        with torch.inference_mode():  # cheaper per op than no_grad; acting never backpropagates
            first = t == 0
            role_np = np.where(first[:, None], self.initial_roles, np.asarray(state.role))
            role = torch.as_tensor(role_np)
            roles_due = torch.as_tensor((t % self.role_interval == 0) & ~first)
            h_u = torch.as_tensor(state.h)  # h^U entering this step
            if roles_due.any():  # Eq. 3 on the last T_U advantage vectors
                adv = torch.as_tensor(state.adv)
                sample = self.is_within_training_step or self.sample_roles_at_test
                out = self.role_selector(adv.flatten(0, 1), sample=sample, generator=self.torch_rng)
                role = torch.where(roles_due[:, None], out.role.view(R, -1), role)
            group = h_group = None
            h_selector = None
            if self.bilevel:
                group = torch.as_tensor(state.group)
                h_group = torch.as_tensor(state.h_group)
                h_selector = torch.as_tensor(state.h_selector)
                assert self.group_selector is not None and self.group_interval is not None
                groups_due = torch.as_tensor(t % self.group_interval == 0)
                if groups_due.any():  # Eq. 4-5, ε-greedy over group Q-values
                    alive = torch.as_tensor(np.asarray(obs.alive)).bool()
                    features = self.group_features(h_u)
                    sel = self.group_selector(role, alive, h_selector, features)
                    chosen = GroupSelector.epsilon_greedy(sel.q, eps, self.rng)
                    group = torch.where(groups_due[:, None], chosen, group)
                    h_selector = torch.where(groups_due[:, None, None], sel.h, h_selector)
            o = torch.as_tensor(np.asarray(obs.obs), dtype=torch.float32)
            x = self.inputs(o, torch.as_tensor(state.last_act))
            q, h, h_group = self.bilevel_q(x, h_u, role, h_group, group)
            mask = torch.as_tensor(mask_np)
            act = masked_argmax(q, mask).numpy()
            new_adv = masked_advantage(q, mask)
        if eps > 0.0:
            explore = self.rng.random(act.shape) < eps
            act = np.where(explore, random_available(mask_np, self.rng), act)
        window = np.concatenate([np.asarray(state.adv)[:, :, 1:], new_adv.numpy()[:, :, None]], 2)
        new_state = Batch(
            h=h.numpy(),
            last_act=self._one_hot[act],
            t=t + 1,
            adv=window,
            role=role.numpy(),
        )
        replay = Batch(role=role.numpy().astype(np.int8), episode_step=t)
        if self.bilevel:
            assert h_group is not None and h_selector is not None and group is not None
            new_state.h_group = h_group.numpy()
            new_state.h_selector = h_selector.numpy()
            new_state.group = group.numpy()
            replay.group = group.numpy().astype(np.int8)
        return Batch(act=act, state=new_state, policy=replay)


@dataclass(kw_only=True)
class BDPSTrainingStats(QMIXTrainingStats):
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
    # per-role / per-group assignment fractions; flattened into the loss dict for logging
    assignments: dict[str, float] = field(default_factory=dict)

    def _get_self_dict(self) -> dict[str, Any]:
        own = {k: v for k, v in self.__dict__.items() if k != "assignments"}
        return {**own, **self.assignments}


def assignment_stats(
    name: str, assign: torch.Tensor, valid: torch.Tensor, k: int
) -> dict[str, float]:
    """Statistics of the assignments ``(B, J, n)`` to k roles or groups at J decisions, over the
    (decision, agent) pairs where ``valid`` ``(B, J, n)`` holds (inside the episode and alive):

    * ``<name>_<i>_frac``: share of pairs in role/group i;
    * ``<name>_switch_rate``: share of an agent's consecutive valid decisions that changed it,
      and ``<name>_switch_rate_indep`` = 1 − Σ_i share_i², the rate that independent draws with
      the same shares would give;
    * ``<name>s_per_env``: mean number of distinct assignments among the valid agents of one env
      at one decision.
    """
    out: dict[str, float] = {}
    if not valid.any():
        return out
    counts = torch.bincount(assign[valid].flatten(), minlength=k).double()
    share = counts / counts.sum()
    out.update({f"{name}_{i}_frac": float(share[i]) for i in range(k)})
    if assign.shape[1] >= 2:
        both = valid[:, 1:] & valid[:, :-1]
        if both.any():
            changed = assign[:, 1:] != assign[:, :-1]
            out[f"{name}_switch_rate"] = float(changed[both].double().mean())
            out[f"{name}_switch_rate_indep"] = float(1.0 - share.pow(2).sum())
    held = (F.one_hot(assign.clamp(0, k - 1), k).bool() & valid.unsqueeze(-1)).any(2)  # (B, J, k)
    decided = valid.any(-1)
    out[f"{name}s_per_env"] = float(held.sum(-1)[decided].double().mean())
    return out


def scaled_entropy_gap(
    q_u: torch.Tensor, q_v: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor
) -> float:
    """ΔH of Eq. 10, H(softmax Q^V) − H(softmax Q^U), at the temperature of each agent's own
    action spread: both are divided by the std of Q = Q^U + Q^V over its available actions.

    Raw softmaxes of LBF's Q-values (spread ≪ 1) are near uniform, which gives ΔH ≈ 1e-4 whatever
    the two levels do; at this temperature ΔH compares the levels' shapes (|ΔH| ≤ log |A|).
    ``valid`` ``(...)`` selects the agent-steps that count (alive, inside the episode)."""
    m = mask.to(q_u.dtype)
    count = m.sum(-1, keepdim=True).clamp_min(1.0)
    q = (q_u + q_v) * m
    mean = q.sum(-1, keepdim=True) / count
    std = (((q_u + q_v - mean) * m).pow(2).sum(-1, keepdim=True) / count).sqrt()
    keep = valid & (std.squeeze(-1) > 1e-8)
    if not keep.any():
        return 0.0
    temp = std.clamp_min(1e-8)
    dh = masked_entropy(q_v / temp, mask) - masked_entropy(q_u / temp, mask)
    return float(dh[keep].mean())


class BDPS(QMIX):
    """The BDPS learner: QMIX's TD loss on Q = Q^U + Q^V, plus L_U and L_V.

    :param group_mixer: QMIX mixer of the group selector's Q-values (Eq. 8); None in the
        single-level ``individual`` mode.
    :param kl_weight: λ of Eq. 7.
    :param role_loss_weight, group_loss_weight: weights of L_U and L_V in the total loss.
    """

    policy: BDPSPolicy

    def __init__(
        self,
        *,
        policy: BDPSPolicy,
        mixer: nn.Module,
        group_mixer: nn.Module | None = None,
        kl_weight: float = 0.01,
        role_loss_weight: float = 1.0,
        group_loss_weight: float = 1.0,
        **qmix_kwargs: Any,
    ) -> None:
        if policy.bilevel != (group_mixer is not None):
            raise ValueError("a group_mixer is needed exactly in bilevel mode")
        if group_mixer is not None:
            check_mixer(group_mixer, policy, "group_mixer")
        extra = [group_mixer] if group_mixer is not None else []
        super().__init__(policy=policy, mixer=mixer, extra_trainable=extra, **qmix_kwargs)
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
        # the online unroll's (Q^U, Q^V, h^U), kept by agent_q_values for L_U, L_V and ΔH
        self._online_levels: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

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
        lengths = torch.as_tensor(batch.lengths)
        rows = torch.arange(len(lengths))

        def with_final(stored: np.ndarray) -> torch.Tensor:
            # the assignment in force after the last action = the last one chosen (T+1 steps)
            x = torch.as_tensor(stored, dtype=torch.long)
            out = torch.cat([x, x[:, -1:]], 1)
            out[rows, lengths] = x[rows, lengths - 1]
            return out

        ep["role"] = with_final(batch.policy.role)
        if self.policy.bilevel:
            ep["group"] = with_final(batch.policy.group)
        ep["alive"] = torch.as_tensor(batch.obs.alive).bool()  # (B, T+1, n)
        ep["lengths"] = lengths
        return ep

    # -- Eq. 6 over the episode batch ---------------------------------------------------------
    def agent_q_values(self, ep: dict[str, torch.Tensor], target: bool = False) -> torch.Tensor:
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
        if not target:
            self._online_levels = (q_u, q_v, h_u)
        return q

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
        decision = torch.arange(1, n_windows + 1) * T_U
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
    def group_loss(self, ep: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
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
        B, T = ep["act"].shape[:2]
        L = ep["lengths"]
        J = -(-T // T_V)
        j = torch.arange(J + 1)
        n_dec = -(-L // T_V)  # decisions per episode
        pos = torch.minimum(j[None] * T_V, L[:, None])  # (B, J+1): decision steps, then L
        pos = torch.where(j[None] < n_dec[:, None], pos, L[:, None])
        valid = j[None, :J] < n_dec[:, None]  # (B, J)

        def at(x: torch.Tensor) -> torch.Tensor:
            return x[torch.arange(B)[:, None], pos]

        roles, alive, state = at(ep["role"]), at(ep["alive"]), at(ep["state"])
        assert self._online_levels is not None
        h_u = self._online_levels[2].detach()  # (B, T+1, n, H): h^U after step t
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
            best = chooser[:, 1:].argmax(-1, keepdim=True)
            q_next = q_sel_target[:, 1:].gather(-1, best).squeeze(-1)
            v_next = self.target_group_mixer(q_next, state[:, 1:])  # (B, J)
            rew = torch.zeros(B, J * T_V)
            rew[:, :T] = ep["rew"]
            interval_rew = rew.unflatten(1, (J, T_V)).sum(-1)
            terminated = ep["terminated"].any(1)  # the episode ended in a terminal state
            last = j[None, :J] == (n_dec - 1)[:, None]
            not_done = 1.0 - (last & terminated[:, None]).float()
            y = interval_rew + self.gamma * not_done * v_next
        w = valid.float()
        loss = ((q_tot - y) ** 2 * w).sum() / w.sum()
        counts = valid[:, :, None] & alive[:, :J]
        stats = assignment_stats("group", at(ep["group"])[:, :J], counts, group_selector.n_groups)
        return loss, stats

    # -- the update ---------------------------------------------------------------------------
    def _update_with_batch(self, batch: Batch) -> BDPSTrainingStats:  # type: ignore[override]
        if len(batch.get_keys()) == 0:
            return BDPSTrainingStats()
        ep = self.episode_tensors(batch)
        td, stats = self.td_loss(ep)
        assert self._online_levels is not None
        q_u, q_v, _ = self._online_levels
        l_u, u_stats = self.role_loss(ep, q_u + q_v)
        loss = td + self.role_loss_weight * l_u
        extra: dict[str, Any] = {"role_loss": l_u.item()}
        if self.policy.bilevel:
            l_v, v_stats = self.group_loss(ep)
            loss = loss + self.group_loss_weight * l_v
            extra["group_loss"] = l_v.item()
            u_stats.update(v_stats)
            T = ep["act"].shape[1]
            agent_steps = ep["valid"][..., None] & ep["alive"][:, :T]
            extra["delta_h"] = scaled_entropy_gap(
                q_u[:, :T].detach(), q_v[:, :T].detach(), ep["mask"][:, :T], agent_steps
            )
        own = set(BDPSTrainingStats.__dataclass_fields__)
        assignments = {k: v for k, v in u_stats.items() if k not in own}
        extra.update({k: v for k, v in u_stats.items() if k in own})
        self.check_finite(
            {
                "Q-values (role and group networks)": stats["q_taken_mean"],
                "TD loss": td,
                "VAE loss (role selector, Eq. 7)": l_u,
                **({"group selector loss (Eq. 8)": l_v} if self.policy.bilevel else {}),
            }
        )
        grad_norm = self.step(loss)
        return BDPSTrainingStats(
            loss=loss.item(),
            td_loss=td.item(),
            grad_norm=grad_norm,
            assignments=assignments,
            q_taken_mean=stats["q_taken_mean"],
            target_mean=stats["target_mean"],
            **extra,
        )
