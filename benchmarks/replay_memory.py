"""Replay memory per stored env step vs the raw joint observation, measured in one run.

For each configuration (LBF 15x15-4p-5f and, when jaxmarl is installed, SMAX 5m_vs_6m; QMIX
and BDPS, which also stores roles and groups: ``--modes``, algorithm variants), the train envs of
``build_run`` fill, through Tianshou's ``Collector`` and the run's policy (ε = 1 by default):

* **before**: a plain ``VectorReplayBuffer`` (Tianshou's default: ``obs_next`` stored, the
  policy's recurrent state stored, float64/int64 scalars, per-slot index arrays);
* **after**: the run's ``EpisodeReplayBuffer``.

Both hold the same number of slots and are filled twice over, so every figure is the cost of a
full buffer: all bytes held (arrays of ``_meta``, Tianshou's index arrays, episode bookkeeping,
the final observations) divided by the slots. ``raw`` = float32 obs + float32 state + int8
mask of one joint step.

    python benchmarks/replay_memory.py [--episodes 20] [--envs 2] [--eps 1.0]
                                       [--configs lbf/15x15-4p-5f,smax/5m_vs_6m]

Ends with one ``<scenario> <mode> stored/raw=X.XX`` line per configuration (target <= 1.10).
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step
from tianshou.data import Collector, VectorReplayBuffer

from bdps_agents.algorithms import algorithm_variants
from bdps_agents.presets import load_config
from bdps_agents.replay import batch_nbytes, raw_step_bytes, stored_bytes
from bdps_agents.training import build_run

NEEDS = {"smax": "jaxmarl"}  # optional package per adapter family


def fill(run, buffer, eps: float) -> Collector:
    """Fill ``buffer`` twice over from the run's train envs and policy."""
    collector = Collector(run.policy, run.train_envs, buffer)
    with policy_within_training_step(run.policy):
        run.policy.set_eps_training(eps)
        collector.reset()
        collector.collect(n_step=2 * buffer.maxsize)
    return collector


def describe(parts: dict[str, int], slots: int) -> str:
    return ", ".join(f"{k} {v / slots:.1f}" for k, v in parts.items())


def measure(scenario: str, mode: str, args: argparse.Namespace) -> dict[str, float]:
    overrides = [
        *(f"{key}={value}" for key, value in algorithm_variants()[mode].items()),
        f"env.num_train_envs={args.envs}",
        "env.num_test_envs=1",
        f"replay.capacity_episodes={args.episodes}",
        f"replay.batch_episodes={min(4, args.episodes)}",
        f"replay.warmup_episodes={min(4, args.episodes)}",
    ]
    run = build_run(load_config(scenario, overrides))
    try:
        after = run.buffer
        start = time.perf_counter()
        fill(run, after, args.eps)
        before = VectorReplayBuffer(after.maxsize, args.envs)
        fill(run, before, args.eps)
        seconds = time.perf_counter() - start
    finally:
        run.close()
    slots = after.maxsize
    raw = raw_step_bytes(after._meta.obs)
    lengths = after._episode_len[after._episode_len > 0]
    parts_before, parts_after = stored_bytes(before), stored_bytes(after)
    b, a = sum(parts_before.values()) / slots, sum(parts_after.values()) / slots
    o = after._meta.obs
    obs_next = batch_nbytes(before._meta.get("obs_next"))
    policy = batch_nbytes(before._meta.get("policy"))  # the recurrent state, mostly
    name = f"{scenario} {mode}"
    print(
        f"{name}: {slots} slots, {after.num_episodes} episodes "
        f"(mean length {np.mean(lengths):.1f}), filled twice in {seconds:.1f} s"
    )
    print(
        f"  raw obs+state+mask: {raw} B/step  (obs {o.obs.shape[1:]} f32, state "
        f"{o.state.shape[1:]} f32, mask {o.mask.shape[1:]} int8)"
    )
    print(
        f"  before (VectorReplayBuffer): {b:8.1f} B/step  stored/raw={b / raw:.2f}  "
        f"[{describe(parts_before, slots)}; of which obs_next {obs_next / slots:.1f}, "
        f"policy {policy / slots:.1f}]"
    )
    print(
        f"  after (EpisodeReplayBuffer): {a:8.1f} B/step  stored/raw={a / raw:.2f}  "
        f"[{describe(parts_after, slots)}]"
    )
    print("  after, stored dtypes: " + ", ".join(f"{k} {v}" for k, v in leaf_dtypes(after)))
    return {"raw": raw, "before": b, "after": a}


def leaf_dtypes(buffer, node=None, prefix: str = ""):
    node = buffer._meta if node is None else node
    for key in sorted(node.get_keys()):
        value = node[key]
        if isinstance(value, np.ndarray):
            yield prefix + key, f"{value.dtype}{list(value.shape[1:])}"
        else:
            yield from leaf_dtypes(buffer, value, prefix + key + ".")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="lbf/15x15-4p-5f,smax/5m_vs_6m", help="scenario presets")
    ap.add_argument("--modes", default="qmix,bdps", help="algorithm variants, e.g. qmix,bdps")
    ap.add_argument("--episodes", type=int, default=20, help="capacity in episode limits")
    ap.add_argument("--envs", type=int, default=2)
    ap.add_argument("--eps", type=float, default=1.0, help="exploration while filling")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {}
    for scenario in args.configs.split(","):
        need = NEEDS.get(scenario.partition("/")[0])
        if need and importlib.util.find_spec(need) is None:
            print(f"{scenario}: skipped ({need} is not installed)")
            continue
        for mode in args.modes.split(","):
            results[scenario, mode] = measure(scenario, mode, args)
    for (scenario, mode), r in results.items():
        print(
            f"{scenario} {mode} raw={r['raw']} before={r['before']:.1f} "
            f"after={r['after']:.1f} B/step  before/raw={r['before'] / r['raw']:.2f} "
            f"stored/raw={r['after'] / r['raw']:.2f}"
        )


if __name__ == "__main__":
    main()
