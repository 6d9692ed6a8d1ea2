"""RODE's learner: the shared TD loss on the role policies' Q-values, plus

* until the start update, the action representation loss (forward model: next observation and
  reward from the observation, the other agents' actions and z_a); at the start update, once,
  k-means of the z_a gives the roles' action spaces (:func:`role_action_spaces`);
* the role selector's TD loss: Q(ρ) of the chosen roles at the decision steps, mixed by a
  second QMIX mixer, against the reward summed over the interval plus γ·Q̄^role_tot at the next
  decision (:class:`~bdps_agents.algorithms.decisions.DecisionSteps`), with its own target
  networks.
One optimiser for all (the reference trains the action representation with its own).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from tianshou.data import Batch
from torch import nn

from bdps_agents.algorithms.clustering import kmeans
from bdps_agents.algorithms.decisions import DecisionSteps, assignment_stats, replayed_assignment
from bdps_agents.algorithms.rode.policy import RODEPolicy, role_action_masks
from bdps_agents.algorithms.value_decomposition import (
    AgentQ,
    AuxiliaryLoss,
    ValueDecomposition,
    ValueDecompositionStats,
)
from bdps_agents.networks.mixer import check_mixer

log = logging.getLogger(__name__)


def role_action_spaces(
    labels: torch.Tensor,
    n_roles: int,
    noop_action: int | None = None,
    move_actions: tuple[int, ...] | list[int] = (),
    move_threshold: int = 3,
) -> torch.Tensor:
    """Role action spaces ``(k, A)`` bool from the k-means label of each action ``(A,)``.

    Role ρ = the actions of cluster ρ, plus the no-op (in every role), plus ``move_actions``
    where the cluster holds ≥ ``move_threshold`` actions besides the no-op and those moves (the
    reference's heuristic, with 3: a role of several attack actions must also be able to
    approach). A cluster left
    empty (k-means on fewer distinct embeddings than k) allows every action."""
    masks = nn.functional.one_hot(labels, n_roles).T.bool()  # (k, A)
    masks[~masks.any(-1)] = True
    special = torch.zeros(labels.shape[0], dtype=torch.bool)
    if noop_action is not None:
        special[noop_action] = True
    moves = torch.zeros_like(special)
    moves[list(move_actions)] = True
    big = (masks & ~special & ~moves).sum(-1) >= move_threshold
    masks[big] |= moves
    return masks | special


@dataclass(kw_only=True)
class RODETrainingStats(ValueDecompositionStats):
    overflow: ClassVar[str] = "roles"

    role_loss: float | None = None
    repr_loss: float | None = None
    repr_obs_error: float | None = None
    repr_reward_mse: float | None = None
    rode_clustered: float | None = None
    # assignment_stats of the roles (the summary table's columns; docs/algorithm.md)
    role_switch_rate: float | None = None
    role_switch_rate_indep: float | None = None
    roles_per_env: float | None = None
    # role shares and each role's action space (role_<i>_actions, role_<i>_mask): roles/<key>
    roles: dict[str, float] = field(default_factory=dict)


class RODE(ValueDecomposition):
    """The RODE learner (module docstring).

    :param role_mixer: QMIX mixer of the chosen roles' Q-values.
    :param start_update: the gradient step after which the k-means fixes the role action
        spaces (the action representation trains until then; 0 behaves as 1).
    :param noop_action, move_actions, move_threshold: :func:`role_action_spaces`'s heuristics.
    :param seed: seeds the k-means.
    """

    policy: RODEPolicy
    q_values_label = "Q-values (role policies)"
    stats_class = RODETrainingStats

    def __init__(
        self,
        *,
        policy: RODEPolicy,
        mixer: nn.Module,
        role_mixer: nn.Module,
        start_update: int = 0,
        noop_action: int | None = 0,
        move_actions: tuple[int, ...] | list[int] = (),
        move_threshold: int = 3,
        reward_loss_weight: float = 10.0,
        repr_loss_weight: float = 1.0,
        role_loss_weight: float = 1.0,
        seed: int = 0,
        **learner_kwargs: Any,
    ) -> None:
        A = policy.n_actions
        bad = [a for a in [noop_action, *move_actions] if a is not None and not 0 <= a < A]
        if bad:
            raise ValueError(
                f"rode.noop_action / rode.move_actions name actions {bad} outside 0..{A - 1}"
            )
        if policy.n_roles > A:
            raise ValueError(f"rode.n_roles ({policy.n_roles}) must be <= n_actions ({A})")
        check_mixer(role_mixer, policy, "role_mixer")
        super().__init__(policy=policy, mixer=mixer, extra_trainable=[role_mixer], **learner_kwargs)
        self.role_mixer = role_mixer
        self.start_update = start_update
        self.noop_action, self.move_actions = noop_action, tuple(move_actions)
        self.move_threshold = move_threshold
        self.reward_loss_weight = reward_loss_weight
        self.repr_loss_weight, self.role_loss_weight = repr_loss_weight, role_loss_weight
        self.seed = seed
        self.target_role_selector = self._add_lagged_network(policy.role_selector)
        self.target_role_mixer = self._add_lagged_network(role_mixer)

    # -- the one-time k-means ---------------------------------------------------------------------
    def cluster_role_actions(self) -> torch.Tensor:
        """k-means of the action embeddings -> the roles' action spaces, set in the policy."""
        policy = self.policy
        with torch.no_grad():
            z = policy.action_repr.embeddings()
        generator = torch.Generator().manual_seed(self.seed)
        labels = kmeans(z.cpu(), policy.n_roles, generator)  # once, small: on the CPU
        masks = role_action_spaces(
            labels, policy.n_roles, self.noop_action, self.move_actions, self.move_threshold
        )
        policy.set_role_action_spaces(masks)
        spaces = {i: torch.nonzero(m).flatten().tolist() for i, m in enumerate(masks)}
        log.info("RODE role action spaces after update %d: %s", self.num_updates, spaces)
        return masks

    def step(self, loss: torch.Tensor) -> float:
        """The optimiser step; then, before the k-means, the acting embeddings follow the
        encoder, and after gradient step ``start_update`` (at least one) the k-means runs."""
        grad_norm = super().step(loss)
        if not bool(self.policy.clustered):
            if self.num_updates >= self.start_update:
                self.cluster_role_actions()
            else:
                self.policy.refresh_action_embeddings()
        return grad_norm

    # -- batch ---------------------------------------------------------------------------------
    def episode_tensors(self, batch: Batch) -> dict[str, torch.Tensor]:
        stored = set(batch.get("policy", Batch()).get_keys())
        if "role" not in stored:
            raise ValueError(
                "the sampled episodes carry no stored roles: RODE replays the roles chosen while "
                "acting, so every episode must be collected by the RODEPolicy (prefill with "
                "bdps_agents.exploration.warmup, not collect(random=True))"
            )
        ep = super().episode_tensors(batch)
        lengths = self.to_device(batch.lengths)
        ep["lengths"] = lengths
        ep["role"] = replayed_assignment(batch.policy.role, lengths)
        ep["alive"] = self.to_device(batch.obs.alive).bool()  # (B, T+1, n)
        # the target's next action is chosen among the role's available actions, as acting does
        ep["mask"] = role_action_masks(self.policy.role_masks, ep["role"], ep["mask"])
        return ep

    def agent_q_values(self, ep: dict[str, torch.Tensor], target: bool = False) -> AgentQ:
        agent = self.target_agent if target else self.policy.agent
        return AgentQ(agent(ep["inputs"], ep["role"], self.policy.action_embed))

    # -- losses -------------------------------------------------------------------------------
    def role_loss(self, ep: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """TD loss of the role selector on interval reward sums (module docstring)."""
        policy = self.policy
        dec = DecisionSteps.of(ep["lengths"], ep["act"].shape[1], policy.role_interval)
        J, at = dec.count, dec.at
        roles, state = at(ep["role"]), at(ep["state"])
        q_role = policy.role_selector.q(at(policy.role_selector(ep["inputs"])), policy.role_embed)
        chosen = q_role[:, :J].gather(-1, roles[:, :J, :, None]).squeeze(-1)
        q_tot = self.role_mixer(chosen, state[:, :J])
        with torch.no_grad():
            x_target = at(self.target_role_selector(ep["inputs"]))
            q_target = policy.role_selector.q(x_target, policy.role_embed)
            chooser = q_role if self.double_q else q_target
            best = chooser[:, 1:].argmax(-1, keepdim=True)
            q_next = q_target[:, 1:].gather(-1, best).squeeze(-1)
            v_next = self.target_role_mixer(q_next, state[:, 1:])
            y = dec.targets(ep["rew"], ep["terminated"], v_next, self.gamma)
        w = dec.valid.float()
        loss = ((q_tot - y) ** 2 * w).sum() / w.sum()
        counts = dec.valid[:, :, None] & at(ep["alive"])[:, :J]
        stats = assignment_stats("role", roles[:, :J], counts, policy.n_roles)
        return loss, stats

    def repr_loss(self, ep: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The forward model's loss on every valid step of alive agents."""
        T = ep["act"].shape[1]
        obs = ep["obs"]
        weight = ep["valid"][..., None] & ep["alive"][:, :T]
        total, obs_term, rew_term = self.policy.action_repr.loss(
            obs[:, :T], ep["act"], obs[:, 1:], ep["rew"], weight, self.reward_loss_weight
        )
        return total, {"repr_obs_error": obs_term.item(), "repr_reward_mse": rew_term.item()}

    def auxiliary_losses(self, ep: dict[str, torch.Tensor], online: AgentQ) -> list[AuxiliaryLoss]:
        l_role, stats = self.role_loss(ep)
        losses = [
            AuxiliaryLoss(
                "role_loss", "role selector TD loss", l_role, self.role_loss_weight, stats
            )
        ]
        if not bool(self.policy.clustered):
            l_repr, repr_stats = self.repr_loss(ep)
            losses.append(
                AuxiliaryLoss(
                    "repr_loss",
                    "action representation loss",
                    l_repr,
                    self.repr_loss_weight,
                    repr_stats,
                )
            )
        return losses

    def diagnostics(self, ep: dict[str, torch.Tensor], online: AgentQ) -> dict[str, float]:
        """Whether the role action spaces are fixed; each role's number of actions and, once
        fixed, its action set as the bitmask Σ 2^a (``role_<i>_mask``: exact up to 53 actions)."""
        masks = self.policy.role_masks
        out = {"rode_clustered": float(bool(self.policy.clustered))}
        out.update({f"role_{i}_actions": float(s) for i, s in enumerate(masks.sum(-1).tolist())})
        if bool(self.policy.clustered) and masks.shape[1] <= 53:
            powers = 2.0 ** torch.arange(masks.shape[1], device=masks.device)
            bits = (masks.double() * powers).sum(-1).tolist()
            out.update({f"role_{i}_mask": b for i, b in enumerate(bits)})
        return out
