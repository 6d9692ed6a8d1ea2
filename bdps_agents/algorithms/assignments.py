"""Who uses which shared network: constrained choices and counterfactual assignments.

* :func:`partition_argmax`: the assignment of agents to m groups that maximises the summed
  group Q-values under the constraint that every group holds an alive agent (BDPS's
  ``bdps.group_choice: partition``; the paper's n ≥ k ≥ m ≥ 2 and "role composition in groups");
* :func:`random_partition`: a random assignment with every group non-empty (its exploration);
* :class:`AssignmentOverride`: replaces what a selector chose by a random or fixed assignment at
  each decision, so that the value of *choosing* can be measured against the same networks
  with other choices (``bdps eval --roles/--groups``, :mod:`bdps_agents.training.selector_value`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

# every mode an override may take; which ones a level offers is the policy's (``OVERRIDE_LEVELS``)
OVERRIDE_MODES = ("chosen", "random", "random-team", "random-partition", "fixed")


def partition_argmax(q: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """``q`` ``(..., n, m)`` group values, ``alive`` ``(..., n)`` bool -> ``(..., n)`` long:
    argmax over assignments g of Σ_i q[i, g_i] such that every group holds at least one alive
    agent (rows with fewer than m alive agents: each agent's own argmax).

    Exact: a feasible assignment's value is Σ_i max_g q_i + Σ over one representative per group
    of (q[i, g] − max q_i), so the best one gives each group the representative of least regret
    (a linear assignment of groups to distinct agents, scipy) and every other agent its argmax.
    Rows whose argmaxes already cover every group are not solved."""
    greedy = q.argmax(-1)
    m = q.shape[-1]
    flat_q = q.detach().reshape(-1, *q.shape[-2:])
    flat_alive = alive.reshape(-1, alive.shape[-1]).bool()
    flat_greedy = greedy.reshape(-1, greedy.shape[-1])
    held = torch.zeros(flat_q.shape[0], m, dtype=torch.bool, device=q.device)
    held.scatter_(1, flat_greedy.masked_fill(~flat_alive, 0), flat_alive)
    todo = (~held.all(-1)) & (flat_alive.sum(-1) >= m)
    if not todo.any():
        return greedy
    out = flat_greedy.clone()
    rows = todo.nonzero().flatten().tolist()
    q_np, alive_np = flat_q[rows].cpu().double().numpy(), flat_alive[rows].cpu().numpy()
    for j, row in enumerate(rows):
        agents = np.flatnonzero(alive_np[j])
        qa = q_np[j, agents]  # (a, m)
        regret = qa.max(1, keepdims=True) - qa
        rep, group = linear_sum_assignment(regret)  # a >= m: one distinct agent per group
        choice = qa.argmax(1)
        choice[rep] = group
        out[row, torch.as_tensor(agents, device=q.device)] = torch.as_tensor(
            choice, device=q.device
        )
    return out.view_as(greedy)


def random_partition(alive: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """``alive`` ``(R, n)`` bool -> ``(R, n)`` int64 groups, every group holding an alive agent
    where at least m are alive: m random alive agents take the m groups (in random order), the
    others a uniform group each. (Not uniform over partitions; every partition has a chance.)"""
    R, n = alive.shape
    out = rng.integers(0, m, size=(R, n))
    for r in range(R):
        agents = np.flatnonzero(alive[r])
        if len(agents) >= m:
            out[r, rng.permutation(agents)[:m]] = rng.permutation(m)
    return out


@dataclass(frozen=True)
class AssignmentOverride:
    """What replaces a selector's choice at each of its decisions (t = 0 included):

    * ``chosen``: nothing (the selector's own choice);
    * ``random``: a uniform choice per agent;
    * ``random-team``: one uniform choice for the whole team of an env;
    * ``random-partition``: a random assignment with every group non-empty
      (:func:`random_partition`): the shape of choice ``bdps.group_choice: partition`` makes;
    * ``fixed:R``: every agent gets R.
    """

    mode: str
    fixed: int | None = None

    @classmethod
    def parse(
        cls, text: str, *, level: str, size: int, modes: tuple[str, ...]
    ) -> AssignmentOverride:
        """``text`` as the CLI takes it (``random``, ``fixed:1``) for ``level`` (e.g. roles)
        with ``size`` choices; ``ValueError`` naming the level and what it accepts."""
        accepted = ", ".join("fixed:N" if mode == "fixed" else mode for mode in modes)
        mode, _, value = text.partition(":")
        if mode not in modes or (mode == "fixed") != bool(value):
            raise ValueError(f"--{level} {text!r}: expected one of {accepted}")
        if mode != "fixed":
            return cls(mode)
        try:
            fixed = int(value)
        except ValueError:
            raise ValueError(f"--{level} {text!r}: N in fixed:N must be an integer") from None
        if not 0 <= fixed < size:
            raise ValueError(f"--{level} {text!r}: N must be in 0..{size - 1} ({size} {level})")
        return cls("fixed", fixed)

    @property
    def replaces(self) -> bool:
        return self.mode != "chosen"

    def __str__(self) -> str:
        return f"fixed:{self.fixed}" if self.mode == "fixed" else self.mode

    def draw(self, alive: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
        """An assignment ``(R, n)`` int64 of ``size`` choices for envs whose agents are
        ``alive`` ``(R, n)`` (only ``random-partition`` reads it)."""
        R, n = alive.shape
        if self.mode == "random":
            return rng.integers(0, size, size=(R, n))
        if self.mode == "random-team":
            return np.repeat(rng.integers(0, size, size=(R, 1)), n, 1)
        if self.mode == "random-partition":
            return random_partition(alive, size, rng)
        if self.mode == "fixed":
            return np.full((R, n), self.fixed, dtype=np.int64)
        raise ValueError(f"the override {self.mode!r} chooses nothing")

    def apply(
        self,
        chosen: torch.Tensor,
        due: np.ndarray,
        alive: np.ndarray,
        size: int,
        rng: np.random.Generator,
    ) -> torch.Tensor:
        """``chosen`` ``(R, n)`` with the rows where a decision is ``due`` ``(R,)`` replaced."""
        if not self.replaces or not due.any():
            return chosen
        drawn = torch.as_tensor(self.draw(alive, size, rng)).to(chosen)
        return torch.where(torch.as_tensor(due)[:, None], drawn, chosen)


# the per-step assignments a policy reports (``policy.role``, ``policy.group``) and the name of
# their diagnostic: distinct values among an env's alive agents
ASSIGNMENT_KEYS = {"role": "roles_per_env", "group": "groups_per_env"}


def distinct_per_env(assign: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """``assign`` ``(..., n)`` ints, ``alive`` ``(..., n)`` bool -> ``(...)`` the number of
    distinct values among the alive agents (0 where none is alive)."""
    assign = np.asarray(assign, dtype=np.int64)
    held = np.zeros((*assign.shape[:-1], int(assign.max(initial=0)) + 1), dtype=bool)
    idx = np.indices(assign.shape)
    np.logical_or.at(held, (*idx[:-1], assign), np.asarray(alive, dtype=bool))
    return held.sum(-1)


class CounterfactualAssignments:
    """Mixin for a policy whose shared networks are chosen per agent (roles, groups,
    clusters): ``OVERRIDE_LEVELS`` names each level with the modes it offers;
    :meth:`set_override` replaces a level's choices (evaluation only: the draws come from a
    generator of their own, so the policy's exploration stream is untouched)."""

    OVERRIDE_LEVELS: ClassVar[dict[str, tuple[str, ...]]] = {}

    def override_sizes(self) -> dict[str, int]:
        """The number of choices of each level this policy has (roles k, groups m, ...)."""
        raise NotImplementedError

    def override_levels(self) -> dict[str, tuple[str, ...]]:
        """The levels this policy has, with the modes each offers: ``OVERRIDE_LEVELS`` less the
        ones it lacks (single-level BDPS has no groups)."""
        sizes = self.override_sizes()
        return {level: modes for level, modes in self.OVERRIDE_LEVELS.items() if level in sizes}

    def override_for(self, level: str) -> AssignmentOverride | None:
        overrides: dict[str, AssignmentOverride] = getattr(self, "_overrides", {})
        found = overrides.get(level)
        return found if found is not None and found.replaces else None

    @property
    def override_rng(self) -> np.random.Generator:
        return self._override_rng

    def set_override(self, level: str, text: str | AssignmentOverride, seed: int = 0) -> None:
        """Replace ``level``'s choices (``text`` as :meth:`AssignmentOverride.parse` reads it;
        ``chosen`` restores the selector's); reseeds the override generator with ``seed``."""
        levels = self.override_levels()
        if level not in levels:
            known = ", ".join(levels) or "none"
            raise ValueError(
                f"{type(self).__name__} has no assignment level {level!r} (it has: {known})"
            )
        sizes = self.override_sizes()
        override = (
            text
            if isinstance(text, AssignmentOverride)
            else AssignmentOverride.parse(text, level=level, size=sizes[level], modes=levels[level])
        )
        if override.mode not in levels[level]:
            raise ValueError(f"--{level} {override}: not offered for {level}")
        overrides = dict(getattr(self, "_overrides", {}))
        overrides[level] = override
        self._overrides = overrides
        self._override_rng = np.random.default_rng(seed)
