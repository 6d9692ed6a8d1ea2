"""RODE's policy: acting with roles and their action spaces.

Per env step t of an episode (``RODEPolicy.forward``):

1. the agent trunk (fc -> GRU) and the role selector's own GRU read the agent's inputs;
2. every ``role_interval`` steps (t = 0 included) each agent picks a role ε-greedily from
   Q(ρ) = x · z_ρ (x from the role selector, z_ρ the mean embedding of the role's actions);
   other steps keep the role;
3. Q_i(a) = key_ρ(h_i) · z_a over the role's actions ∩ the env's available actions (all
   available actions when that intersection is empty), masked ε-greedy among them.

Before the k-means (the learner's start step) every role allows every action and all z_ρ are
equal; the role ε is then the action ε. After it, the role ε restarts at 1 and anneals over
``role_eps_anneal_steps`` env steps of training counted here, in the acting process.

What the learner changes (action embeddings, role action spaces, the "clustered" flag) lives in
persistent buffers: they travel in checkpoints and from the learner process with the weights.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from tianshou.data import Batch

from bdps_agents.algorithms.assignments import CounterfactualAssignments
from bdps_agents.exploration import LinearSchedule
from bdps_agents.networks.rode import ActionRepresentation, RODEAgent, RODERoleSelector
from bdps_agents.policy import MultiAgentQPolicy, masked_argmax, random_available


def role_action_masks(
    role_masks: torch.Tensor, role: torch.Tensor, available: torch.Tensor
) -> torch.Tensor:
    """Each agent's role actions ∩ its available actions, ``(..., n, A)`` bool; where that is
    empty (e.g. a SMAC unit whose role only attacks, with no enemy in range), all available."""
    both = role_masks[role] & available
    return torch.where(both.any(-1, keepdim=True), both, available)


class RODEPolicy(CounterfactualAssignments, MultiAgentQPolicy):
    """Acting with a role selector and role-restricted action spaces (module docstring).

    ``agent`` is the :class:`RODEAgent`; ``action_repr`` is trained by the learner and only
    its embeddings are used here."""

    # set_override("roles", ...): a random role among its k roles per agent, or one per team
    OVERRIDE_LEVELS: ClassVar[dict[str, tuple[str, ...]]] = {
        "roles": ("chosen", "random", "random-team", "fixed")
    }

    agent: RODEAgent  # type: ignore[assignment]  # the key heads take roles and embeddings
    action_embed: torch.Tensor
    role_embed: torch.Tensor
    role_masks: torch.Tensor
    clustered: torch.Tensor

    def __init__(
        self,
        *,
        agent: RODEAgent,
        role_selector: RODERoleSelector,
        action_repr: ActionRepresentation,
        role_interval: int,
        role_eps_anneal_steps: int = 70_000,
        role_eps_end: float = 0.05,
        **policy_kwargs: Any,
    ) -> None:
        super().__init__(agent=agent, **policy_kwargs)  # type: ignore[arg-type]
        k, A, d = agent.groups, self.n_actions, agent.embed_dim
        if role_selector.embed_dim != d or action_repr.embed_dim != d:
            raise ValueError(
                f"agent, role_selector and action_repr must share the embedding size (agent "
                f"{d}, role_selector {role_selector.embed_dim}, action_repr "
                f"{action_repr.embed_dim})"
            )
        if action_repr.n_actions != A or action_repr.n_agents != self.n_agents:
            raise ValueError(
                f"action_repr is for {action_repr.n_agents} agents and {action_repr.n_actions} "
                f"actions; the env has {self.n_agents} and {A}"
            )
        if role_interval < 1:
            raise ValueError(f"role_interval must be >= 1, got {role_interval}")
        self.role_selector = role_selector
        self.action_repr = action_repr
        self.role_interval = role_interval
        self.n_roles = k
        self.role_eps_schedule = LinearSchedule(1.0, role_eps_end, role_eps_anneal_steps)
        self.role_steps = 0  # env steps acted in training since the k-means
        with torch.no_grad():
            z = action_repr.embeddings()
        self.register_buffer("action_embed", z.clone())
        self.register_buffer("role_embed", z.mean(0).expand(k, d).clone())
        self.register_buffer("role_masks", torch.ones(k, A, dtype=torch.bool))
        self.register_buffer("clustered", torch.tensor(False))

    def override_sizes(self) -> dict[str, int]:
        return {"roles": self.n_roles}

    @staticmethod
    def _check_sharing(agent: Any, n_agents: int) -> None:
        pass  # role heads: any number k

    # -- what the learner sets ------------------------------------------------------------------
    @torch.no_grad()
    def refresh_action_embeddings(self) -> None:
        """Before the k-means: the embeddings the agents use follow the encoder."""
        z = self.action_repr.embeddings()
        self.action_embed.copy_(z)
        self.role_embed.copy_(z.mean(0).expand_as(self.role_embed))

    @torch.no_grad()
    def set_role_action_spaces(self, masks: torch.Tensor) -> None:
        """Fix the roles' action spaces ``(k, A)`` bool (once): z_ρ = mean z_a of the role."""
        if masks.shape != self.role_masks.shape or not masks.any(-1).all():
            raise ValueError(
                f"role action spaces must be {tuple(self.role_masks.shape)} bool with an action "
                "in every role"
            )
        z = self.action_repr.embeddings()
        m = masks.to(z)  # dtype and device of the embeddings
        self.action_embed.copy_(z)
        self.role_embed.copy_((m @ z) / m.sum(-1, keepdim=True))
        self.role_masks.copy_(masks)
        self.clustered.fill_(True)

    # -- acting ---------------------------------------------------------------------------------
    def role_eps(self) -> float:
        if not self.is_within_training_step:
            return self.eps_inference
        if not bool(self.clustered):
            return self.eps_training
        return self.role_eps_schedule(self.role_steps)

    def initial_state(self, batch_size: int) -> Batch:
        state = super().initial_state(batch_size)
        R, n = batch_size, self.n_agents
        state.h_role = np.zeros((R, n, self.role_selector.hidden_dim), dtype=np.float32)
        state.role = np.zeros((R, n), dtype=np.int64)
        return state

    def forward(self, batch: Batch, state: Any | None = None, **kwargs: Any) -> Batch:
        obs = batch.obs
        mask_np, state = self.acting_inputs(batch, state)
        R = mask_np.shape[0]
        t = np.asarray(state.t)
        role_eps = self.role_eps()
        with torch.inference_mode():
            o = torch.as_tensor(np.asarray(obs.obs), dtype=torch.float32)
            x = self.inputs(o, torch.as_tensor(state.last_act))
            sel_x, h_role = self.role_selector.step(x, torch.as_tensor(state.h_role))
            role = torch.as_tensor(np.asarray(state.role))
            due = t % self.role_interval == 0
            if due.any():
                greedy = self.role_selector.q(sel_x, self.role_embed).argmax(-1).numpy()
                explore = self.rng.random(greedy.shape) < role_eps
                chosen = np.where(
                    explore, self.rng.integers(self.n_roles, size=greedy.shape), greedy
                )
                role = torch.where(torch.as_tensor(due)[:, None], torch.as_tensor(chosen), role)
                if (cf := self.override_for("roles")) is not None:  # counterfactual evaluation
                    alive = np.asarray(obs.alive).astype(bool)
                    role = cf.apply(role, due, alive, self.n_roles, self.override_rng)
            q, h = self.agent.step(x, torch.as_tensor(state.h), role, self.action_embed)
            mask = role_action_masks(self.role_masks, role, torch.as_tensor(mask_np))
            act = masked_argmax(q, mask).numpy()
            mask_np = mask.numpy()
        eps = self.current_eps
        if eps > 0.0:
            explore = self.rng.random(act.shape) < eps
            act = np.where(explore, random_available(mask_np, self.rng), act)
        if self.is_within_training_step and bool(self.clustered):
            self.role_steps += R
        new_state = Batch(
            h=h.numpy(),
            last_act=self._one_hot[act],
            t=t + 1,
            h_role=h_role.numpy(),
            role=role.numpy(),
        )
        replay = Batch(role=role.numpy().astype(np.int8), episode_step=t)
        return Batch(act=act, state=new_state, policy=replay)

    # -- generators and counters (checkpointed with the algorithm) ------------------------------
    def generator_states(self) -> dict[str, Any]:
        """The exploration generator and the role ε's step count (acting state, kept by this
        process when the learner process's state is adopted)."""
        return {**super().generator_states(), "role_steps": self.role_steps}

    def set_generator_states(self, states: dict[str, Any]) -> None:
        super().set_generator_states(states)
        self.role_steps = int(states.get("role_steps", 0))
