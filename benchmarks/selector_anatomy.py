"""Why BDPS's choices are (not) worth more than random ones: what a checkpoint's role networks,
group networks and group selector do in greedy episodes.

    python benchmarks/selector_anatomy.py CHECKPOINT [--episodes 50] [--seed 0]

Plays greedy episodes on fixed env seeds (as ``bdps eval``) and reports, as JSON:

* ``role_disagreement`` (k x k): among agent-steps assigned role u (row), the share at which
  role network r (column) would pick a different greedy action than network u, each reading
  the same input and hidden state (Q^U only, over available actions). Identical networks: 0;
  specialists: large off the diagonal;
* ``chosen_return``: the greedy return of these episodes (the returns with roles or groups
  replaced, fixed ones included, are ``bdps eval --selector-value``'s);
* ``q_spread_roles`` / ``q_spread_groups``: the mean standard deviation over available actions
  of Q^U and of Q^V: how much each level can change an action;
* ``group_preference``: at group decisions, d_i = Q_i(group 0) − Q_i(group 1) of every alive
  agent; ``per_env_share`` = the share of d's variance that is common to the agents of one env
  (1: the selector only says "this env: group g", the same for all its agents), and
  ``mean_abs_d``;
* ``roles_per_env``, ``groups_per_env``: distinct roles and groups per env, mean over steps.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from bdps_agents.algorithms.bdps.policy import BDPSPolicy
from bdps_agents.policy import masked_argmax
from bdps_agents.training.evaluation import checkpoint_run
from bdps_agents.training.selector_value import EVAL_SEED_BASE, paired_episodes


def masked_std(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Std of q ``(..., A)`` over the available actions -> ``(...)``."""
    m = mask.float()
    count = m.sum(-1).clamp_min(1.0)
    mean = (q * m).sum(-1) / count
    return (((q - mean[..., None]) ** 2 * m).sum(-1) / count).sqrt()


def anatomy(checkpoint: str, episodes: int, seed: int) -> dict[str, Any]:
    with checkpoint_run(checkpoint) as run:
        policy = run.policy
        if not isinstance(policy, BDPSPolicy):
            raise SystemExit(f"{checkpoint} is not a BDPS checkpoint")
        k = policy.role_selector.n_roles
        venv, metrics = run.test_envs, run.test_metrics
        seeds = range(EVAL_SEED_BASE + seed, EVAL_SEED_BASE + seed + episodes)

        differ = np.zeros((k, k))
        count = np.zeros(k)
        spreads: dict[str, list[float]] = {"roles": [], "groups": []}
        prefs: list[np.ndarray] = []  # (R, n) d_i at group decisions, NaN for dead agents
        current: dict[str, torch.Tensor] = {}
        role_step, acting_inputs = policy.agent.step, policy.acting_inputs
        choose_groups = policy.choose_groups

        def record_inputs(batch: Any, state: Any) -> Any:
            mask, state = acting_inputs(batch, state)
            current["mask"] = torch.as_tensor(mask)
            current["alive"] = torch.as_tensor(np.asarray(batch.obs.alive)).bool()
            return mask, state

        def record_roles(x: torch.Tensor, h: torch.Tensor, index: Any = None) -> Any:
            q, h_new = role_step(x, h, index)
            mask, alive = current["mask"], current["alive"]
            own = masked_argmax(q, mask)
            for r in range(k):
                q_r, _ = role_step(x, h, torch.full_like(index, r))
                other = masked_argmax(q_r, mask)
                for u in range(k):
                    rows = (index == u) & alive
                    differ[u, r] += float((other != own)[rows].sum())
                    if r == 0:
                        count[u] += float(rows.sum())
            spreads["roles"].append(float(masked_std(q, mask)[alive].mean()))
            return q, h_new

        def record_groups(q: torch.Tensor, alive: torch.Tensor, eps: float) -> torch.Tensor:
            if q.shape[-1] >= 2:
                d = (q[..., 0] - q[..., 1]).double()
                prefs.append(torch.where(alive, d, torch.nan).numpy())
            return choose_groups(q, alive, eps)

        policy.acting_inputs = record_inputs  # type: ignore[method-assign]
        policy.agent.step = record_roles  # type: ignore[method-assign]
        policy.choose_groups = record_groups  # type: ignore[method-assign]
        if policy.group_agent is not None:
            group_step = policy.group_agent.step

            def record_group_q(x: torch.Tensor, h: torch.Tensor, index: Any = None) -> Any:
                q_v, h_new = group_step(x, h, index)
                mask, alive = current["mask"], current["alive"]
                spreads["groups"].append(float(masked_std(q_v, mask)[alive].mean()))
                return q_v, h_new

            policy.group_agent.step = record_group_q  # type: ignore[method-assign]
        try:
            chosen = paired_episodes(policy, venv, seeds, metrics.keys, metrics.names)
        finally:
            for name in ("acting_inputs", "choose_groups"):
                delattr(policy, name)
            del policy.agent.step
            if policy.group_agent is not None:
                del policy.group_agent.step

    out: dict[str, Any] = {
        "checkpoint": checkpoint,
        "episodes": episodes,
        "chosen_return": float(chosen.returns.mean()),
        "role_disagreement": (differ / np.maximum(count, 1)[:, None]).round(4).tolist(),
        "role_agent_steps": count.tolist(),
        "q_spread_roles": float(np.mean(spreads["roles"])),
        **{key: float(np.mean(v)) for key, v in chosen.assignments.items()},
    }
    if spreads["groups"]:
        out["q_spread_groups"] = float(np.mean(spreads["groups"]))
    if prefs:
        d = np.concatenate(prefs)  # (decisions, n)
        env_mean = np.nanmean(d, axis=1, keepdims=True)
        within = np.nanmean((d - env_mean) ** 2)
        total = np.nanvar(d)
        out["group_preference"] = {
            "per_env_share": float(1.0 - within / total) if total > 0 else 1.0,
            "mean_abs_d": float(np.nanmean(np.abs(d))),
            "decisions": int(d.shape[0]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(anatomy(args.checkpoint, args.episodes, args.seed)))


if __name__ == "__main__":
    main()
