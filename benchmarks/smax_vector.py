"""Batched SMAX (``SMAXVectorEnv``) against the unbatched adapter stack, in one run.

For each env count (default 8, 16, 32) on one SMAX map (default 5m_vs_6m), both vector envs run
through the same Tianshou ``Collector`` and QMIX policy (ε = 0.5, as ``throughput.py``):

* unbatched: ``DummyVectorEnv`` of ``JointEnv(SMACParallelEnv(SMAXStarCraft2Env(map)))``
  (``make_vector_env`` with ``env.vector_env: dummy``: one adapter per env);
* batched: :class:`bdps_agents.adapters.smax.vector.SMAXVectorEnv` (one jitted call per vector
  step).

* batched-B: the same with ``obs_format="batch"`` (observations handed over as one Tianshou
  ``Batch`` instead of an object array of dicts, which the Collector would convert every step);
  what training uses for SMAX (``env.vector_env: auto`` resolves to ``smax_batched``).

Figures (the method of ``benchmarks/throughput.py``'s ``measure``): (a) collect-only env
steps/s; (b) end-to-end: collection plus one ``--batch-episodes``-episode QMIX update per
~``--steps-per-update`` env steps; and milliseconds per update. Ends with the ratios per env
count, then for the largest count::

    ratio batched/unbatched collect=X end-to-end=Y overlapped=Z overlapped/in-turn=W
    ratio batched-B/unbatched collect=X end-to-end=Y overlapped=Z overlapped/in-turn=W

(``overlapped``: both stacks with a learner process, ``training.overlap_learning``;
``overlapped/in-turn``: batched with one against the unbatched stack learning in turn.)

    python benchmarks/smax_vector.py [--map 5m_vs_6m] [--envs 8,16,32] [--steps 4800]

Timings on a shared machine are noisy: compare the ratios, measured back to back in one run.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import torch
from tianshou.env import BaseVectorEnv

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import env_section, time_collection

from bdps_agents.adapters.smax.vector import SMAXVectorEnv
from bdps_agents.algorithms import build_algorithm
from bdps_agents.config import ExperimentConfig
from bdps_agents.memory import reuse_freed_memory
from bdps_agents.training import (
    EnvSpec,
    make_joint,
    make_vector_env,
)

# unbatched: DummyVectorEnv of the adapter stack; batched: SMAXVectorEnv with the default
# observations (object arrays of dicts, as DummyVectorEnv); batched-B: obs_format="batch"
KINDS = ("unbatched", "batched", "batched-B")


def make_venv(kind: str, cfg: ExperimentConfig, envs: int, seed: int = 0) -> BaseVectorEnv:
    if kind == "unbatched":
        return make_vector_env(cfg.env, envs, seed, keep_info=False)  # as training's
    obs_format = "batch" if kind == "batched-B" else "dicts"
    return SMAXVectorEnv.from_env_config(cfg.env, envs, seed=seed, obs_format=obs_format)


def measure(
    kind: str, cfg: ExperimentConfig, envs: int, args: argparse.Namespace
) -> dict[str, float]:
    """``throughput.time_collection``'s figures for one vector env, learner process included."""
    torch.manual_seed(0)
    venv = make_venv(kind, cfg, envs)
    spec_env = venv.probe if isinstance(venv, SMAXVectorEnv) else make_joint(cfg.env)
    spec = EnvSpec.of(spec_env)
    algorithm = build_algorithm(cfg, spec)
    return time_collection(
        algorithm,
        venv,
        spec_env.episode_limit or 50,
        args,
        warmup_episodes=2,
        factory=functools.partial(build_algorithm, cfg, spec),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--map", default="5m_vs_6m")
    ap.add_argument("--envs", default="8,16,32", help="comma-separated env counts")
    ap.add_argument("--steps", type=int, default=4800, help="env steps per figure")
    ap.add_argument("--steps-per-update", type=int, default=50)
    ap.add_argument("--batch-episodes", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    reuse_freed_memory()  # as training does (training.reuse_freed_memory)
    counts = [int(n) for n in args.envs.split(",")]

    print(
        f"SMAX {args.map}, QMIX (full sharing), eps 0.5, {args.steps} env steps per figure; "
        f"end-to-end: one {args.batch_episodes}-episode update per ~{args.steps_per_update} "
        "env steps"
    )
    print(
        f"{'envs':>5} {'vector env':>10} {'collect':>10} {'end-to-end':>11} {'update':>8} "
        f"{'overlapped':>11}  (env steps/s, ms per update; overlapped: end-to-end with a "
        "learner process, training.overlap_learning)"
    )
    ratios = {}
    for envs in counts:
        cfg = ExperimentConfig.model_validate(
            {"env": env_section("smax", args.map, envs, "dummy"), "algorithm": {"name": "qmix"}}
        )
        res = {}
        for kind in KINDS:
            r = res[kind] = measure(kind, cfg, envs, args)
            print(
                f"{envs:>5} {kind:>10} {r['collect']:>10.0f} {r['e2e']:>11.0f} "
                f"{r['update_ms']:>8.1f} {r['e2e_overlap']:>11.0f}",
                flush=True,
            )
        for kind in KINDS[1:]:
            ratios[envs, kind] = line = ratio_line(res[kind], res["unbatched"])
            print(f"[envs={envs}] ratio {kind}/unbatched {line}", flush=True)
    for kind in KINDS[1:]:
        print(f"ratio {kind}/unbatched {ratios[counts[-1], kind]}")


def ratio_line(r: dict[str, float], base: dict[str, float]) -> str:
    """Collect and end-to-end ratios (learning in turn; both with a learner process; batched
    with one against the unbatched stack learning in turn)."""
    return (
        f"collect={r['collect'] / base['collect']:.2f} end-to-end={r['e2e'] / base['e2e']:.2f} "
        f"overlapped={r['e2e_overlap'] / base['e2e_overlap']:.2f} "
        f"overlapped/in-turn={r['e2e_overlap'] / base['e2e']:.2f}"
    )


if __name__ == "__main__":
    main()
