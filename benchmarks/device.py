"""CPU against GPU (``training.device``), all figures measured in one run:

1. milliseconds per update (32 episodes): on the CPU (``algorithm.update``) and on the device
   (the :class:`~bdps_agents.learner_process.DeviceLearner` that training uses, copying the
   acting networks back after each step, as training does), on the same replay buffer;
2. end-to-end env steps/s of ``bdps train`` (collection on the CPU, updates on each device).

    python benchmarks/device.py [--scenarios lbf/15x15-4p-5f,smax/27m_vs_30m]
                                [--algos qmix,bdps] [--updates 10] [--steps 3000]

Without CUDA it measures the CPU only and says so. Ends with one line per scenario and
algorithm: ``<scenario> <algo> update_ms cpu=C cuda=G speedup=S end_to_end cpu=E1 cuda=E2
ratio=R`` (speedup and ratio: GPU over CPU).
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step

from bdps_agents.algorithms import build_algorithm
from bdps_agents.learner_process import DeviceLearner
from bdps_agents.presets import load_config
from bdps_agents.training import build_run, train

# a small replay (27m_vs_30m's preset holds 500 episodes, GBs); the update reads 32 episodes
COMMON = {
    "replay.capacity_episodes": 64,
    "replay.batch_episodes": 32,
    "replay.warmup_episodes": 32,
    "training.progress": False,
    "training.torch_threads": 1,
}


def update_ms(scenario: str, algo: str, device: str, updates: int) -> float:
    """Mean milliseconds of ``updates`` updates (after one untimed) on ``device``."""
    cfg = load_config(scenario, [f"algorithm.name={algo}", *_items(COMMON)])
    run = build_run(cfg)
    try:
        with policy_within_training_step(run.policy):
            run.policy.set_eps_training(1.0)
            run.train_collector.reset()
            run.train_collector.collect(n_episode=32)
        algorithm = run.algorithm
        if device != "cpu":
            factory = functools.partial(build_algorithm, cfg, run.spec)
            algorithm.remote_learner = DeviceLearner(algorithm, factory, device)
        with policy_within_training_step(run.policy):
            algorithm.update(run.buffer, 32)  # untimed: builds the device copy, warms caches
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(updates):
                algorithm.update(run.buffer, 32)
            if device != "cpu":
                torch.cuda.synchronize()
            return (time.perf_counter() - start) / updates * 1000
    finally:
        run.close()


def end_to_end(scenario: str, algo: str, device: str, steps: int) -> float:
    """Env steps/s of a ``bdps train`` run of ``steps`` steps (warm-up and tests included)."""
    overrides = {
        **COMMON,
        "algorithm.name": algo,
        "training.device": device,
        "training.total_steps": steps,
        "training.test_interval": steps,
        "training.test_episodes": 4,
    }
    cfg = load_config(scenario, _items(overrides))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(cfg, Path(tmp) / "run")
        return result.env_steps / (time.perf_counter() - start)


def _items(overrides: dict) -> list[str]:
    return [f"{key}={value}" for key, value in overrides.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default="lbf/15x15-4p-5f,smax/27m_vs_30m")
    parser.add_argument("--algos", default="qmix,bdps")
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3000, help="env steps per end-to-end run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
        print(f"cuda: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    else:
        print(
            f"cuda: not available on this machine (torch {torch.__version__}, CUDA build: "
            f"{torch.version.cuda or 'no'}): CPU figures only",
            flush=True,
        )
    lines = []
    for scenario in args.scenarios.split(","):
        for algo in args.algos.split(","):
            ms = {d: update_ms(scenario, algo, d, args.updates) for d in devices}
            print(f"{scenario} {algo}: update ms {ms}", flush=True)
            sps = {d: end_to_end(scenario, algo, d, args.steps) for d in devices}
            print(f"{scenario} {algo}: end-to-end steps/s {sps}", flush=True)
            line = f"{scenario} {algo} update_ms cpu={ms['cpu']:.1f}"
            if "cuda" in ms:
                line += f" cuda={ms['cuda']:.1f} speedup={ms['cpu'] / ms['cuda']:.1f}"
            line += f" end_to_end cpu={sps['cpu']:.0f}"
            if "cuda" in sps:
                line += f" cuda={sps['cuda']:.0f} ratio={sps['cuda'] / sps['cpu']:.2f}"
            lines.append(line)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
