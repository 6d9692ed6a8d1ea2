"""BDPS's quantities of its update and diagnostics: advantages (Sec. 3.1.1), the entropy gap
ΔH (Eq. 10) and the statistics of role and group assignments (docs/algorithm.md,
"Diagnostics": each has a no-information value to compare with)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def masked_advantage(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A = max_a Q − Q over available actions (≥ 0); 0 for unavailable actions (Sec. 3.1.1)."""
    best = q.masked_fill(~mask, float("-inf")).max(-1, keepdim=True).values
    return torch.where(mask, best - q, torch.zeros_like(q))


def masked_entropy(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(Q) over available actions (the p of Eq. 10)."""
    logp = torch.log_softmax(q.masked_fill(~mask, float("-inf")), dim=-1)
    return -(logp.exp() * logp.masked_fill(~mask, 0.0)).sum(-1)


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
