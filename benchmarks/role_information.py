"""Do BDPS's roles and groups carry information? Fresh episodes from a checkpoint, each figure
next to the value that no information gives.

    python benchmarks/role_information.py CHECKPOINT [--episodes 64] [--eps 0.05] [--seed 1000]
    python benchmarks/role_information.py CHECKPOINT --refit --kl 0.001,0.01,0.1,1

Plays ``--episodes`` episodes with the checkpoint's policy at ε = ``--eps`` (roles as the
policy chooses them outside training) and reports, over the role decisions t = j·T_U, j ≥ 1,
of alive agents:

* ``role_recon_ratio`` (no information: 1) and ``role_latent_snr`` (0) of the role selector on
  the windows it saw (``RoleSelector.information``);
* role shares, ``roles_per_env`` (1), the role switch rate against independent draws with the
  same shares; the same for groups at group decisions (t = 0 included);
* on maps with unit types (SMAX): the mutual information between role and unit type, in nats,
  for the acted roles and for argmax mu, next to its value with the roles shuffled across
  (decision, agent) pairs (the estimator's bias floor) and H(type) (its ceiling).

``--refit`` also trains fresh role selectors on the same windows, raw and standardised, for each
λ of ``--kl`` (2,000 Adam steps on 70% of the windows, figures on the other 30%): the
advantage-scale and λ sweep of docs/results/roles-and-groups.md. Works with checkpoints of every
sharing mode (QMIX ones only give windows, for ``--refit``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tianshou.data import Batch

from bdps_agents.algorithms import build_algorithm
from bdps_agents.algorithms.bdps.diagnostics import masked_advantage
from bdps_agents.algorithms.bdps.policy import BDPSPolicy
from bdps_agents.algorithms.decisions import assignment_stats
from bdps_agents.config import ExperimentConfig
from bdps_agents.networks.role_selector import RoleSelector, gaussian_kl
from bdps_agents.presets import apply_overrides
from bdps_agents.training import EnvSpec, load_checkpoint, make_joint


def unit_types(env: Any, n: int) -> np.ndarray | None:
    """The allies' unit types of a SMAX episode (after reset), or None for other envs."""
    inner = getattr(getattr(env, "env", None), "env", None)
    state = getattr(inner, "smax_state", None)
    state = getattr(state, "state", state)  # HeuristicEnemySMAX wraps the SMAX state
    if state is None or not hasattr(state, "unit_types"):
        return None
    return np.asarray(state.unit_types)[:n].astype(np.int64)


def collect(cfg: Any, data: dict, episodes: int, eps: float, seed: int) -> dict[str, Any]:
    """Windows, roles, groups and unit types at the decisions of fresh episodes."""
    torch.manual_seed(seed)
    env = make_joint(cfg.env)
    alg = build_algorithm(cfg, EnvSpec.of(env))
    alg.load_state_dict(dict(data["algorithm"]))
    policy = alg.policy
    policy.set_eps_inference(eps)
    policy.seed(seed)
    bdps = isinstance(policy, BDPSPolicy)
    T_U = policy.role_interval if bdps else cfg.section("bdps").role_interval
    T_V = policy.group_interval if bdps and policy.bilevel else None
    rec: dict[str, list] = {k: [] for k in ("window", "role", "alive", "type", "episode")}
    groups: dict[str, list] = {"group": [], "alive": [], "episode": []}
    returns = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        types = unit_types(env, policy.n_agents)
        state, t, done, ret = None, 0, False, 0.0
        window = np.zeros((policy.n_agents, T_U, policy.n_actions), np.float32)
        while not done:
            batch = Batch(obs=Batch({k: np.asarray(v)[None] for k, v in obs.items()}), info=Batch())
            decision = t > 0 and t % T_U == 0
            if decision:
                rec["window"].append(np.asarray(state.adv[0]) if bdps else window.copy())
                rec["alive"].append(np.asarray(obs["alive"]).astype(bool))
                rec["type"].append(types)
                rec["episode"].append(e)
            if not bdps:  # QMIX: the window of its own advantages
                with torch.no_grad():
                    q, _ = policy.agent_q(batch.obs, state or policy.initial_state(1))
                adv = masked_advantage(q[0], torch.as_tensor(np.asarray(obs["mask"])).bool())
                window = np.concatenate([window[:, 1:], adv.numpy()[:, None]], 1)
            out = policy(batch, state)
            if decision and bdps:
                rec["role"].append(np.asarray(out.state.role[0]))
            if T_V is not None and t % T_V == 0:
                groups["group"].append(np.asarray(out.state.group[0]))
                groups["alive"].append(np.asarray(obs["alive"]).astype(bool))
                groups["episode"].append(e)
            obs, rew, term, trunc, _ = env.step(out.act[0])
            ret += float(rew)
            state, t, done = out.state, t + 1, bool(term or trunc)
        returns.append(ret)
    env.close()
    out: dict[str, Any] = {"policy": policy, "returns": np.asarray(returns), "T_U": T_U}
    out.update({k: np.asarray(v) for k, v in rec.items() if v and v[0] is not None})
    if groups["group"]:
        out["groups"] = {k: np.asarray(v) for k, v in groups.items()}
    return out


def assignment_figures(name: str, assign: np.ndarray, alive: np.ndarray, ep: np.ndarray, k: int):
    """:func:`bdps_agents.algorithms.decisions.assignment_stats` of (D, n) assignments at
    D decisions, ``ep`` naming each decision's episode: the decisions are padded into
    (episodes, J, n) first."""
    episodes = np.unique(ep)
    J = max(int((ep == e).sum()) for e in episodes)
    padded = np.zeros((len(episodes), J, assign.shape[1]), dtype=np.int64)
    valid = np.zeros(padded.shape, dtype=bool)
    for row, e in enumerate(episodes):
        at = ep == e
        padded[row, : at.sum()], valid[row, : at.sum()] = assign[at], alive[at]
    stats = assignment_stats(name, torch.as_tensor(padded), torch.as_tensor(valid), k)
    shares = [round(stats.pop(f"{name}_{i}_frac", 0.0), 3) for i in range(k)]
    return {f"{name}_shares": shares, **stats}


def mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """Plug-in MI (nats) of two discrete samples."""
    joint = np.zeros((x.max() + 1, y.max() + 1))
    np.add.at(joint, (x, y), 1.0)
    joint /= joint.sum()
    px, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (px @ py)[nz])).sum())


def type_information(roles: np.ndarray, types: np.ndarray, rng: np.random.Generator) -> dict:
    shuffled = [mutual_information(rng.permutation(roles), types) for _ in range(20)]
    p = np.bincount(types) / len(types)
    return {
        "mi": mutual_information(roles, types),
        "mi_shuffled": float(np.mean(shuffled)),
        "h_type": float(-(p[p > 0] * np.log(p[p > 0])).sum()),
    }


def selector_figures(selector: RoleSelector, windows: torch.Tensor) -> dict[str, Any]:
    with torch.no_grad():
        out = selector(windows, sample=False)
        kl = float(gaussian_kl(out.mu, out.logvar).mean())
    return {**selector.information(windows, out), "vae_kl": kl, "mu_role": out.role.numpy()}


def refit(windows: torch.Tensor, k: int, kl_weight: float, standardize: bool, seed: int) -> tuple:
    """A fresh role selector trained on 70% of ``windows``; (selector, held-out indices)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    perm = torch.randperm(len(windows), generator=g)
    cut = int(0.7 * len(windows))
    train, test = perm[:cut], perm[cut:]
    sel = RoleSelector(windows.shape[2], k, windows.shape[1], standardize=standardize)
    sel.update_scale(windows[train])
    opt = torch.optim.Adam(sel.parameters(), lr=1e-3)
    for _ in range(2000):
        idx = train[torch.randint(len(train), (256,), generator=g)]
        out = sel(windows[idx], generator=g)
        loss, _, _ = sel.loss(windows[idx], out, kl_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return sel, test


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--episodes", type=int, default=64)
    p.add_argument("--eps", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--refit", action="store_true")
    p.add_argument("--kl", default="0.001,0.01,0.1,1")
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="config override, e.g. for a checkpoint from before issue 17: "
        "--set bdps.standardize_advantages=false --set bdps.group_selector_input=roles",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg, data = load_checkpoint(args.checkpoint)
    if args.set:
        cfg = ExperimentConfig.model_validate(apply_overrides(cfg.model_dump(), args.set))
    got = collect(cfg, data, args.episodes, args.eps, args.seed)
    policy, rng = got["policy"], np.random.default_rng(0)
    alive = got["alive"]  # (D, n)
    windows = torch.as_tensor(got["window"][alive])  # (N, T_U, A)
    report: dict[str, Any] = {
        "checkpoint": args.checkpoint,
        "episodes": args.episodes,
        "eps": args.eps,
        "return_mean": float(got["returns"].mean()),
        "windows": len(windows),
    }
    types = got["type"][alive] if "type" in got else None
    if isinstance(policy, BDPSPolicy):
        k = policy.role_selector.n_roles
        report.update(assignment_figures("role", got["role"], alive, got["episode"], k))
        fig = selector_figures(policy.role_selector, windows)
        if types is not None:
            report["mi_acted_role_type"] = type_information(got["role"][alive], types, rng)
            report["mi_mu_role_type"] = type_information(fig["mu_role"], types, rng)
        report.update({k: v for k, v in fig.items() if k != "mu_role"})
        if "groups" in got:
            gr = got["groups"]
            m = policy.group_selector.n_groups
            report.update(assignment_figures("group", gr["group"], gr["alive"], gr["episode"], m))
    if args.refit:
        k = cfg.section("bdps").n_roles
        fits = []
        for standardize in (False, True):
            for kl_weight in [float(x) for x in args.kl.split(",")]:
                sel, test = refit(windows, k, kl_weight, standardize, args.seed)
                fig = selector_figures(sel, windows[test])
                mu_role = fig.pop("mu_role")
                row = {"standardize": standardize, "kl_weight": kl_weight, **fig}
                row["role_shares"] = [
                    round(float(s), 3) for s in np.bincount(mu_role, minlength=k) / len(mu_role)
                ]
                if types is not None:
                    row["mi_role_type"] = type_information(mu_role, types[test.numpy()], rng)
                fits.append(row)
                print(json.dumps(row), file=sys.stderr)
        report["refit"] = fits
    text = json.dumps(report, indent=1, default=float)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
