"""BDPS's policy: acting with roles and groups (paper Sec. 3, Eqs. 3-6)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from tianshou.data import Batch

from bdps_agents.algorithms.assignments import (
    CounterfactualAssignments,
    partition_argmax,
    random_partition,
)
from bdps_agents.algorithms.bdps.config import check_sharing_sizes
from bdps_agents.algorithms.bdps.diagnostics import masked_advantage
from bdps_agents.networks.agent import RecurrentAgent
from bdps_agents.networks.group_selector import GroupSelector
from bdps_agents.networks.role_selector import RoleSelector
from bdps_agents.policy import (
    MultiAgentQPolicy,
    masked_argmax,
    random_available,
    seeded_torch_generator,
)

GROUP_INPUTS = ("roles", "roles+id", "roles+trajectory")
GROUP_CHOICES = ("argmax", "partition")


def group_feature_dim(group_input: str, n_agents: int, hidden_dim: int) -> int:
    """Per-agent features the group selector reads besides the role, for ``group_input``:
    none, a one-hot agent id, or the role network's hidden state h^U."""
    if group_input not in GROUP_INPUTS:
        raise ValueError(f"group_input must be one of {GROUP_INPUTS}, got {group_input!r}")
    return {"roles": 0, "roles+id": n_agents, "roles+trajectory": hidden_dim}[group_input]


class BDPSPolicy(CounterfactualAssignments, MultiAgentQPolicy):
    """Acting with role and group selectors; roles/groups go to the buffer via ``policy``.

    ``agent`` holds the k role networks; ``group_agent`` the m group networks (``None`` in the
    single-level ``individual`` mode); ``group_selector`` likewise. ``set_override("roles" |
    "groups", ...)`` replaces the selectors' choices in evaluation (selector value).
    """

    torch_rng: torch.Generator  # always set (seeded_torch_generator)
    OVERRIDE_LEVELS: ClassVar[dict[str, tuple[str, ...]]] = {
        "roles": ("chosen", "random", "random-team", "fixed"),
        "groups": ("chosen", "random", "random-team", "random-partition", "fixed"),
    }

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
        group_choice: str = "argmax",
        role_switch_margin: float = 0.0,
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
        ``group_choice``: ``argmax``: each agent takes its best group (the paper);
        ``partition``: the assignment with every group holding an alive agent that maximises
        the summed group values (:func:`partition_argmax`), explored with random partitions.
        ``role_switch_margin``: an agent keeps its role unless another role's latent exceeds
        its current role's by more than this (0: argmax z, the paper; roles persist with > 0).
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
        if group_choice not in GROUP_CHOICES:
            raise ValueError(f"group_choice must be one of {GROUP_CHOICES}, got {group_choice!r}")
        if role_switch_margin < 0:
            raise ValueError(f"role_switch_margin must be >= 0, got {role_switch_margin}")
        self.group_choice = group_choice
        self.role_switch_margin = role_switch_margin
        self.episode_limit = episode_limit
        # roles before any advantage history exists (t = 0): a fixed spread over the k roles
        self.initial_roles = np.arange(self.n_agents) % role_selector.n_roles
        seed = policy_kwargs.get("seed")
        self.torch_rng = seeded_torch_generator(seed)

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

    def group_features(self, h_u: torch.Tensor) -> torch.Tensor | None:
        """The group selector's per-agent input besides the role, from h^U ``(..., n, H)``
        entering the decision step: None, one-hot ids or h^U itself (``group_input``)."""
        if self.group_input == "roles+id":
            eye = torch.eye(self.n_agents, dtype=h_u.dtype, device=h_u.device)
            return eye.expand(*h_u.shape[:-1], self.n_agents)
        if self.group_input == "roles+trajectory":
            return h_u.detach()
        return None

    def override_sizes(self) -> dict[str, int]:
        sizes = {"roles": self.role_selector.n_roles}
        if self.group_selector is not None:
            sizes["groups"] = self.group_selector.n_groups
        return sizes

    def persistent_roles(self, z: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """Roles from latents ``z`` ``(..., k)``: argmax z, except that an agent keeps its
        ``current`` role unless the best latent exceeds the current role's by more than
        ``role_switch_margin`` (hysteresis; 0 gives argmax z, Eq. 3)."""
        best = z.argmax(-1)
        if self.role_switch_margin <= 0:
            return best
        gain = z.max(-1).values - z.gather(-1, current[..., None]).squeeze(-1)
        return torch.where(gain > self.role_switch_margin, best, current)

    def choose_groups(self, q: torch.Tensor, alive: torch.Tensor, eps: float) -> torch.Tensor:
        """Groups ``(R, n)`` from group values ``q`` ``(R, n, m)``: ε-greedy per agent
        (``argmax``), or per env between the best and a random partition (``partition``)."""
        if self.group_choice == "argmax":
            return GroupSelector.epsilon_greedy(q, eps, self.rng)
        greedy = partition_argmax(q, alive)
        if eps <= 0.0:
            return greedy
        explore = torch.as_tensor(self.rng.random(q.shape[0]) < eps)
        if not explore.any():
            return greedy
        random = torch.as_tensor(random_partition(alive.numpy(), q.shape[-1], self.rng))
        return torch.where(explore[:, None], random.to(greedy), greedy)

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
        mask_np, state = self.acting_inputs(batch, state)
        R = mask_np.shape[0]
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
                chosen_roles = self.persistent_roles(out.z.view(R, self.n_agents, -1), role)
                role = torch.where(roles_due[:, None], chosen_roles, role)
            alive_np = np.asarray(obs.alive).astype(bool)
            if (cf := self.override_for("roles")) is not None:  # counterfactual evaluation
                k = self.role_selector.n_roles
                role = cf.apply(role, t % self.role_interval == 0, alive_np, k, self.override_rng)
            group = h_group = None
            h_selector = None
            if self.bilevel:
                group = torch.as_tensor(state.group)
                h_group = torch.as_tensor(state.h_group)
                h_selector = torch.as_tensor(state.h_selector)
                assert self.group_selector is not None and self.group_interval is not None
                groups_due_np = t % self.group_interval == 0
                groups_due = torch.as_tensor(groups_due_np)
                if groups_due.any():  # Eq. 4-5, ε-greedy over group Q-values
                    alive = torch.as_tensor(alive_np)
                    features = self.group_features(h_u)
                    sel = self.group_selector(role, alive, h_selector, features)
                    chosen = self.choose_groups(sel.q, alive, eps)
                    group = torch.where(groups_due[:, None], chosen, group)
                    h_selector = torch.where(groups_due[:, None, None], sel.h, h_selector)
                    if (cf := self.override_for("groups")) is not None:
                        m = self.group_selector.n_groups
                        group = cf.apply(group, groups_due_np, alive_np, m, self.override_rng)
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
