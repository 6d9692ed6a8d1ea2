"""Throughput on LBF 15x15-4p-5f (or a SMAX map), all figures measured in one run.

1. raw: the simulator alone, random available actions, no wrappers (lbforaging's ForagingEnv;
   for SMAX the jit-compiled ``SMAXStarCraft2Env``, which the adapter wraps; gfootball's env);
2. collect-only: adapter + JointEnv + Tianshou Collector (training's vector env) + policy acting
   (raw on LBF and collect-only are each the best of ``--repeat`` runs, default 3);
3. end-to-end: collection plus one 32-episode update per ~50 env steps;
4. milliseconds per update, and the GFLOP one update computes (``torch.utils.flop_counter``:
   products forward and backward), so a mode's work is seen apart from its speed.

    python benchmarks/throughput.py [--steps 20000] [--envs 8] [--env lbf:15x15-4p-5f]
                                    [--modes qmix,bdps]
    python benchmarks/throughput.py --env smax:5m_vs_6m --steps 5000
    python benchmarks/throughput.py --env grf:academy_3_vs_1_with_keeper --steps 3000

Each algorithm variant in ``--modes`` (``bdps_agents.algorithms.algorithm_variants``: qmix,
qmix-none, vdn, bdps, bdps-individual, ...) is measured (collect-only, end-to-end learning in
turn, ms per update, end-to-end with a learner process: ``training.overlap_learning``); the
first (QMIX) is the baseline for the cost ratio of the others. Ends with:
``ratio collect/raw=X end-to-end/raw=Y end-to-end-overlap/raw=Z update_ms=U`` for the first
mode, then one ``cost <mode>/qmix=C (overlap D; update U, update GFLOP F)`` line per further
mode: end-to-end time per env step relative to QMIX, learning in turn and with a learner
process; then the time and the floating-point work of one update relative to QMIX's.
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step
from tianshou.data import Collector
from torch.utils.flop_counter import FlopCounterMode

from bdps_agents.adapters.lbf import parse_task
from bdps_agents.algorithms import algorithm_variants, build_algorithm
from bdps_agents.config import ExperimentConfig, default_vector_env
from bdps_agents.learner_process import LearnerProcess
from bdps_agents.memory import reuse_freed_memory
from bdps_agents.presets import merge_overrides
from bdps_agents.replay import EpisodeReplayBuffer
from bdps_agents.training import (
    EnvSpec,
    make_joint,
    make_vector_env,
)


def raw_steps_per_second(
    adapter: str, task: str, steps: int, seed: int = 0, repeat: int = 1
) -> float:
    """Steps/s of the simulator alone; LBF's is the best of ``repeat`` runs of ``steps``."""
    if adapter == "smax":
        return raw_smax_steps_per_second(task, steps, seed)
    if adapter == "grf":
        return raw_grf_steps_per_second(task, steps, seed)
    from lbforaging.foraging import ForagingEnv

    kw = parse_task(task)
    field = kw.get("field_size", 8)
    env = ForagingEnv(
        players=kw["players"],
        min_player_level=1,
        max_player_level=2,
        min_food_level=1,
        max_food_level=None,
        field_size=field if isinstance(field, tuple) else (field, field),
        max_num_food=kw["max_num_food"],
        sight=kw.get("sight") or max(field if isinstance(field, tuple) else (field,)),
        max_episode_steps=50,
        force_coop=kw.get("coop", False),
    )
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)

    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            valid = env.unwrapped._valid_actions
            actions = [valid[p][rng.integers(len(valid[p]))].value for p in env.unwrapped.players]
            _, _, terminated, truncated, _ = env.step(actions)
            if terminated or truncated:
                env.reset()
        return steps / (time.perf_counter() - start)

    return max(run() for _ in range(repeat))


def raw_smax_steps_per_second(map_name: str, steps: int, seed: int = 0) -> float:
    from bdps_agents.adapters.smax import SMAXStarCraft2Env

    env = SMAXStarCraft2Env(map_name, seed=seed)
    rng = np.random.default_rng(seed)

    def run(n: int) -> None:
        env.reset()
        for _ in range(n):
            avail = env.get_avail_actions_array()
            actions = [int(rng.choice(np.flatnonzero(row))) for row in avail]
            _, terminated, _ = env.step(actions)
            if terminated:
                env.reset()

    run(10)  # compile outside the timing
    start = time.perf_counter()
    run(steps)
    return steps / (time.perf_counter() - start)


def raw_grf_steps_per_second(env_name: str, steps: int, seed: int = 0) -> float:
    """gfootball alone, as the adapter configures it (raw obs, whole left team, random actions)."""
    from bdps_agents.adapters.grf import GRFParallelEnv

    n_left = GRFParallelEnv(env_name).n_left  # builds a throw-away env to read the team size
    from gfootball.env import create_environment

    env = create_environment(
        env_name=env_name,
        representation="raw",
        number_of_left_players_agent_controls=n_left,
        rewards="scoring,checkpoints",
        render=False,
        other_config_options={"game_engine_random_seed": seed},
    )
    rng = np.random.default_rng(seed)
    env.reset()
    start = time.perf_counter()
    for _ in range(steps):
        _, _, done, _ = env.step(rng.integers(0, 19, size=n_left).tolist())
        if done:
            env.reset()
    return steps / (time.perf_counter() - start)


def env_section(adapter: str, task: str, envs: int, vector_env: str) -> dict:
    """The ``env`` config section for ``--env adapter:task``."""
    kwargs = {"lbf": {"task": task}, "smax": {"map_name": task}, "grf": {"env_name": task}}
    return {
        "adapter": adapter,
        "kwargs": kwargs[adapter],
        "reward_aggregation": "sum" if adapter == "lbf" else "mean",
        "num_train_envs": envs,
        "vector_env": vector_env,
    }


def time_collection(
    algorithm,
    venv,
    limit: int,
    args: argparse.Namespace,
    warmup_episodes: int = 4,
    factory=None,
) -> dict[str, float]:
    """Figures of ``algorithm``'s policy on ``venv``: ``collect`` (steps/s, ``args.steps``
    collected steps), ``e2e`` (steps/s with one ``args.batch_episodes`` update per
    ``args.steps_per_update`` steps, rounded up to whole vector steps) and ``update_ms`` (per
    update); with ``factory`` (builds the algorithm in a child) also ``e2e_overlap`` and
    ``wait_ms``: the same with the updates in a :class:`LearnerProcess`
    (``training.overlap_learning``; ``wait_ms`` = time per update call spent here: waiting,
    sampling, sending). Closes venv."""
    n_envs = venv.env_num
    buffer = EpisodeReplayBuffer(300 * limit, n_envs)  # 300 episodes: fits for 27 agents
    collector = Collector(algorithm.policy, venv, buffer)
    per_collect = -(-args.steps_per_update // n_envs) * n_envs
    steps = -(-args.steps // n_envs) * n_envs
    with policy_within_training_step(algorithm.policy):
        algorithm.policy.set_eps_training(0.5)
        collector.reset()
        # compile (SMAX) and fill the buffer with complete episodes before timing
        collector.collect(n_step=max(per_collect, warmup_episodes * limit * n_envs))
        collect = 0.0
        for _ in range(getattr(args, "repeat", 1)):  # best of: as the raw figure
            start = time.perf_counter()
            collector.collect(n_step=steps)
            collect = max(collect, steps / (time.perf_counter() - start))

        n_iter = max(1, steps // per_collect)

        def end_to_end() -> tuple[float, float]:
            update_time = 0.0
            start = time.perf_counter()
            for _ in range(n_iter):
                collector.collect(n_step=per_collect)
                t0 = time.perf_counter()
                algorithm.update(buffer, args.batch_episodes)
                update_time += time.perf_counter() - t0
            if algorithm.remote_learner is not None:
                algorithm.remote_learner.sync()  # the last step counts too
            return n_iter * per_collect / (time.perf_counter() - start), update_time / n_iter

        e2e, update_s = end_to_end()
        out = {"collect": collect, "e2e": e2e, "update_ms": 1000 * update_s}
        out["update_gflop"] = update_gflop(algorithm, buffer, args.batch_episodes)
        if factory is not None:
            algorithm.remote_learner = LearnerProcess(algorithm, factory)
            try:
                algorithm.remote_learner.start()  # spawning is not part of the figure
                out["e2e_overlap"], wait_s = end_to_end()
                out["wait_ms"] = 1000 * wait_s
            finally:
                algorithm.remote_learner.close()
                algorithm.remote_learner = None
    venv.close()
    return out


def update_gflop(algorithm, buffer, batch_episodes: int) -> float:
    """Floating-point operations of one update (forward and backward products, as counted by
    ``torch.utils.flop_counter``): the work a sharing mode asks for, whatever the speed."""
    counter = FlopCounterMode(display=False)
    with counter:
        algorithm.update(buffer, batch_episodes)
    return counter.get_total_flops() / 1e9


def measure(cfg: ExperimentConfig, args: argparse.Namespace) -> dict[str, float]:
    """:func:`time_collection`'s figures for one configuration, with a learner process."""
    probe = make_joint(cfg.env)
    spec = EnvSpec.of(probe)
    algorithm = build_algorithm(cfg, spec)
    venv = make_vector_env(cfg.env, args.envs, seed=0, keep_info=False)  # as training's
    factory = functools.partial(build_algorithm, cfg, spec)
    return time_collection(algorithm, venv, probe.episode_limit or 50, args, factory=factory)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--env",
        default="lbf:15x15-4p-5f",
        help="lbf:<task>, smax:<map> or grf:<scenario>, e.g. smax:5m_vs_6m",
    )
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--steps-per-update", type=int, default=50)
    ap.add_argument("--batch-episodes", type=int, default=32)
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="LBF's raw and every collect-only figure are the best of this many runs: the "
        "machine's speed drifts between figures measured seconds apart",
    )
    ap.add_argument(
        "--modes",
        default="qmix,bdps",
        help="algorithm variants (qmix, qmix-none, vdn, bdps, bdps-individual, ...); the first "
        "is the base",
    )
    ap.add_argument(
        "--vector-env",
        choices=["auto", "dummy", "subproc", "smax_batched"],
        default="auto",
        help="as env.vector_env; auto = training's default (smax_batched for SMAX, else dummy)",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    reuse_freed_memory()  # as training does (training.reuse_freed_memory)
    modes = args.modes.split(",")

    adapter, _, task = args.env.partition(":")
    if adapter not in ("lbf", "smax", "grf") or not task:
        ap.error(f"--env must be lbf:<task>, smax:<map> or grf:<scenario>, got {args.env!r}")
    if args.repeat < 1:
        ap.error(f"--repeat must be >= 1, got {args.repeat}")
    raw = raw_steps_per_second(adapter, task, args.steps, repeat=args.repeat)
    kind = default_vector_env(adapter) if args.vector_env == "auto" else args.vector_env
    print(f"env {args.env}, {args.envs} {kind} envs, {args.steps} steps per figure")
    sim = {"lbf": "ForagingEnv", "smax": "SMAXStarCraft2Env", "grf": "gfootball"}[adapter]
    print(f"raw env:             {raw:9.0f} steps/s  ({sim} alone, random available actions)")
    results = {}
    variants = algorithm_variants()
    for mode in modes:
        if mode not in variants:
            ap.error(f"--modes: unknown {mode!r}; registered: {', '.join(variants)}")
        base: dict = {"env": env_section(adapter, task, args.envs, args.vector_env)}
        if variants[mode]["algorithm.name"] == "bdps":  # another algorithm's section is refused
            sizes = {"n_roles": 2, "n_groups": 2, "role_interval": 5, "group_interval_multiple": 2}
            base["bdps"] = sizes
        overrides = [(key, value, "--modes") for key, value in variants[mode].items()]
        cfg = ExperimentConfig.model_validate(merge_overrides(base, overrides))
        r = results[mode] = measure(cfg, args)
        what = "adapter + JointEnv + Collector + policy"
        print(f"[{mode:10s}] collect-only: {r['collect']:9.0f} steps/s  ({what})")
        print(
            f"[{mode:10s}] end-to-end:   {r['e2e']:9.0f} steps/s  (one {args.batch_episodes}-"
            f"episode update per ~{args.steps_per_update} env steps, learning in turn)"
        )
        rate = 1000 * r["update_gflop"] / r["update_ms"]
        print(
            f"[{mode:10s}] update:       {r['update_ms']:9.1f} ms per update  "
            f"({r['update_gflop']:.2f} GFLOP: {rate:.0f} GFLOP/s)"
        )
        print(
            f"[{mode:10s}] end-to-end:   {r['e2e_overlap']:9.0f} steps/s  (the same with a "
            f"learner process, training.overlap_learning; {r['wait_ms']:.1f} ms per update "
            "call spent waiting, sampling and sending)"
        )
    base = results[modes[0]]
    ratios = (
        f"collect/raw={base['collect'] / raw:.2f} end-to-end/raw={base['e2e'] / raw:.2f} "
        f"end-to-end-overlap/raw={base['e2e_overlap'] / raw:.2f}"
    )
    print(f"ratio {ratios} update_ms={base['update_ms']:.1f}")
    for mode in modes[1:]:
        r = results[mode]
        print(
            f"cost {mode}/{modes[0]}={base['e2e'] / r['e2e']:.2f} "
            f"(overlap {base['e2e_overlap'] / r['e2e_overlap']:.2f}; "
            f"update {r['update_ms'] / base['update_ms']:.2f}, "
            f"update GFLOP {r['update_gflop'] / base['update_gflop']:.2f})"
        )


if __name__ == "__main__":
    main()
