"""The TD(λ) targets of the value-decomposition learner (step 6 of
:mod:`bdps_agents.algorithms.value_decomposition`)."""

from __future__ import annotations

import torch


def td_lambda_targets(
    rew: torch.Tensor,
    terminated: torch.Tensor,
    valid: torch.Tensor,
    q_next: torch.Tensor,
    gamma: float,
    td_lambda: float,
) -> torch.Tensor:
    """λ-returns, backwards over time; all inputs ``(B, T)``, ``q_next[:, t]`` = Q_tot'(s_{t+1}).

    G_t = r_t + γ(1 − d_t)·[(1 − λ)·Q'_{t+1} + λ·G_{t+1}], and at the last valid step of an
    episode the bracket is Q'_{t+1} alone. λ = 0 gives one-step targets r_t + γ(1 − d_t)·Q'_{t+1}.
    """
    B, T = rew.shape
    not_done = 1.0 - terminated.float()
    out = torch.zeros_like(rew)
    later = torch.zeros(B, dtype=rew.dtype, device=rew.device)
    for t in range(T - 1, -1, -1):
        has_next = valid[:, t + 1] if t + 1 < T else torch.zeros_like(valid[:, t])
        blend = (1.0 - td_lambda) * q_next[:, t] + td_lambda * later
        cont = torch.where(has_next, blend, q_next[:, t])
        out[:, t] = rew[:, t] + gamma * not_done[:, t] * cont
        later = out[:, t]
    return out * valid.float()
