"""The random team of docs/results/: every agent picks uniformly among its available actions
at every step (the policy at ε = 1). Mean team return (and win rate where the env reports one)
over test episodes, per seed.

    python benchmarks/random_team.py lbf/8x8-2p-2f --seeds 0,1,2 --episodes 128
"""

from __future__ import annotations

import argparse

from bdps_agents.presets import load_config
from bdps_agents.training import build_run, greedy_return


def random_team(scenario: str, seed: int, episodes: int) -> tuple[float, dict[str, float]]:
    cfg = load_config(scenario, [f"training.seed={seed}", "algorithm.name=qmix"])
    run = build_run(cfg)
    run.policy.set_eps_inference(1.0)  # uniformly random among available actions
    mean, _ = greedy_return(run, episodes)
    metrics = run.test_metrics.pop_means()
    run.close()
    return mean, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", help="a preset, e.g. lbf/8x8-2p-2f")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated, e.g. 0,1,2")
    parser.add_argument("--episodes", type=int, default=128, help="episodes per seed")
    args = parser.parse_args()
    means = []
    for seed in (int(s) for s in args.seeds.split(",")):
        mean, metrics = random_team(args.scenario, seed, args.episodes)
        means.append(mean)
        extra = "".join(f" {k} {v:.3f}" for k, v in sorted(metrics.items()))
        print(f"{args.scenario} seed {seed}: return {mean:.3f}{extra} ({args.episodes} episodes)")
    print(f"{args.scenario}: mean return {sum(means) / len(means):.3f} over {len(means)} seeds")


if __name__ == "__main__":
    main()
