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
    # G_t = a_t + c_t·G_{t+1}, with everything that does not depend on G computed for all t at
    # once: one operation per step in the loop
    has_next = torch.zeros_like(valid)
    has_next[:, :-1] = valid[:, 1:]
    discount = gamma * (1.0 - terminated.to(rew.dtype))
    bootstrap = torch.where(has_next, (1.0 - td_lambda) * q_next, q_next)
    a = (rew + discount * bootstrap).T.contiguous()  # time-major: each step reads one row
    c = (discount * td_lambda * has_next.to(rew.dtype)).T.contiguous()
    out = torch.empty_like(a)
    later = torch.zeros_like(a[0])
    for t in range(a.shape[0] - 1, -1, -1):
        later = torch.addcmul(a[t], c[t], later, out=out[t])
    return out.T * valid.to(rew.dtype)
