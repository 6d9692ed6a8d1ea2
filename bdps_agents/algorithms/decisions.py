"""Assignments chosen every few steps while acting and replayed in the update: BDPS's roles and
groups, RODE's roles. Their pieces, shared by those learners:

* :func:`replayed_assignment`: the stored per-step assignment extended to the T+1 steps of an
  episode batch;
* :class:`DecisionSteps`: where an interval's decisions lie in each episode, and the TD target
  of a selector trained as an extra RL task on interval reward sums (RODE's role selector, BDPS's
  group selector, Eq. 8);
* :func:`assignment_stats`: shares, switch rates and distinct assignments per env, each with the
  value independent draws would give.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F


def replayed_assignment(stored: np.ndarray, lengths: torch.Tensor) -> torch.Tensor:
    """``stored`` ``(B, T, n)`` assignments of the acted steps -> ``(B, T+1, n)`` long: step L
    of an episode of length L (the observation after its last action) keeps the last one chosen."""
    x = torch.as_tensor(stored, dtype=torch.long).to(lengths.device)
    rows = torch.arange(len(lengths), device=lengths.device)
    out = torch.cat([x, x[:, -1:]], 1)
    out[rows, lengths] = x[rows, lengths - 1]
    return out


@dataclass(frozen=True)
class DecisionSteps:
    """Decision j of an episode of length L happens at step τ_j = j·interval while τ_j < L.

    ``pos`` ``(B, J+1)``: τ_0..τ_{J−1}, then L (the observation after the last action) at and
    after the episode's last decision; ``valid`` ``(B, J)``: decision j exists; ``last``
    ``(B, J)``: decision j is the episode's last one (its interval holds the episode end)."""

    interval: int
    pos: torch.Tensor
    valid: torch.Tensor
    last: torch.Tensor

    @classmethod
    def of(cls, lengths: torch.Tensor, steps: int, interval: int) -> DecisionSteps:
        """``lengths`` ``(B,)`` of episodes padded to ``steps`` steps."""
        J = -(-steps // interval)
        j = torch.arange(J + 1, device=lengths.device)
        n_dec = -(-lengths // interval)  # decisions per episode
        pos = torch.minimum(j[None] * interval, lengths[:, None])
        pos = torch.where(j[None] < n_dec[:, None], pos, lengths[:, None])
        valid = j[None, :J] < n_dec[:, None]
        last = j[None, :J] == (n_dec - 1)[:, None]
        return cls(interval, pos, valid, last)

    @property
    def count(self) -> int:
        """J, the most decisions of an episode in the batch."""
        return self.valid.shape[1]

    def at(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, T+1, ...)`` at the J+1 positions: ``(B, J+1, ...)``."""
        return x[torch.arange(x.shape[0], device=x.device)[:, None], self.pos]

    def targets(
        self,
        rew: torch.Tensor,
        terminated: torch.Tensor,
        v_next: torch.Tensor,
        gamma: float,
    ) -> torch.Tensor:
        """y_j = Σ r over [τ_j, τ_j + interval) + γ·(1 − d)·v_next_j, ``(B, J)``: ``rew``
        ``(B, T)``; ``terminated`` ``(B, T)`` (d = 1 for the interval holding a terminal end);
        ``v_next`` ``(B, J)`` the target value at the next decision (or after the last step).
        The interval's reward sum is discounted once, as RODE does."""
        B = rew.shape[0]
        J = self.count
        T = min(rew.shape[1], J * self.interval)  # steps past the last interval are padding
        padded = rew.new_zeros(B, J * self.interval)
        padded[:, :T] = rew[:, :T]
        interval_rew = padded.unflatten(1, (J, self.interval)).sum(-1)
        ended = terminated.any(1)  # the episode ended in a terminal state
        not_done = 1.0 - (self.last & ended[:, None]).float()
        return interval_rew + gamma * not_done * v_next


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
