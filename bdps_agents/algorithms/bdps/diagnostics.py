"""BDPS's quantities of its update and diagnostics: advantages (Sec. 3.1.1) and the entropy gap
ΔH (Eq. 10) (docs/algorithm.md, "Diagnostics"). The statistics of role and group assignments
are :func:`bdps_agents.algorithms.decisions.assignment_stats`."""

from __future__ import annotations

import torch


def masked_advantage(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A = max_a Q − Q over available actions (≥ 0); 0 for unavailable actions (Sec. 3.1.1)."""
    best = q.masked_fill(~mask, float("-inf")).max(-1, keepdim=True).values
    return torch.where(mask, best - q, torch.zeros_like(q))


def masked_entropy(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(Q) over available actions (the p of Eq. 10)."""
    logp = torch.log_softmax(q.masked_fill(~mask, float("-inf")), dim=-1)
    return -(logp.exp() * logp.masked_fill(~mask, 0.0)).sum(-1)


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
