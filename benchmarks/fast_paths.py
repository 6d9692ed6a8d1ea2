"""The learner's fast paths (``bdps_agents.settings``) on and off, each measured in the same run:

1. the whole update (QMIX and BDPS on LBF 15x15-4p-5f, 32 episodes): everything on; the GRU
   recurrence through autograd instead of ``GRUSequence``; PyTorch's default Adam instead of the
   fused one; everything off (``BDPS_FAST_PATHS=0``). A piece stays only if the update without
   it is >= 1.2x slower (issue 36);
2. the pieces alone: the agent network's unroll forward + backward (k = 1 and k = 3 cells), one
   Adam step;
3. one acting step of each policy (8 envs; no gradient), which has no switch: its figure is for
   comparing two versions of the code (``--acting-only`` runs on any version that has
   ``build_run``).

    python benchmarks/fast_paths.py [--repeat 5] [--acting-only]

Every figure is the best of ``--repeat`` timings (the machine's speed drifts between figures
measured seconds apart), alternating the settings. Ends with one ``<what> fast=F plain=P
ratio=R`` line per comparison (ratio = plain / fast).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step, torch_train_mode

LBF = {"env": {"adapter": "lbf", "kwargs": {"task": "15x15-4p-5f"}}}


def best_ms(fn: Callable[[], object], repeat: int, inner: int) -> float:
    fn()  # warm: memory reused
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner * 1000)
    return best


def small_run(mode: str, **training):
    """A training run of ``mode`` on LBF 15x15-4p-5f with 40 random episodes stored."""
    from bdps_agents.algorithms import algorithm_variants
    from bdps_agents.config import ExperimentConfig
    from bdps_agents.exploration import warmup
    from bdps_agents.presets import merge_overrides
    from bdps_agents.training import build_run

    base = {**LBF, "training": {"progress": False, **training}}
    overrides = [(k, v, "fast_paths") for k, v in algorithm_variants()[mode].items()]
    run = build_run(ExperimentConfig.model_validate(merge_overrides(base, overrides)))
    warmup(run.train_collector, n_episode=40)
    return run


def whole_update(repeat: int) -> list[tuple[str, float, float]]:
    from bdps_agents import settings

    out = []
    for mode in ("qmix", "bdps"):
        run = small_run(mode)
        settings_of = {  # (GRU recurrence as one node, fused Adam)
            "all on": (True, True),
            "GRU recurrence through autograd": (False, True),
            "PyTorch's default Adam": (True, False),
            "all off": (False, False),
        }
        learners = {fused: learner_with_adam(run, fused) for fused in (True, False)}
        figures: dict[str, float] = {}
        for _ in range(2):  # alternate, so that drift hits every setting
            for what, (recurrence, fused) in settings_of.items():
                learner = learners[fused]
                settings.set_fast_paths(recurrence)
                try:
                    with policy_within_training_step(learner.policy), torch_train_mode(learner):
                        ms = best_ms(lambda lr=learner, r=run: lr.update(r.buffer, 32), repeat, 3)
                finally:
                    settings.set_fast_paths(True)
                figures[what] = min(figures.get(what, float("inf")), ms)
        run.close()
        out.extend(
            (f"{mode} update, {what} (ms)", figures["all on"], figures[what])
            for what in list(settings_of)[1:]
        )
    return out


def learner_with_adam(run, fused: bool):
    """``run``'s learner, rebuilt with a fused or a default Adam (the optimiser's kind is fixed
    when it is built) and given the same networks."""
    from bdps_agents import settings
    from bdps_agents.algorithms import build_algorithm

    previous = settings.set_fast_paths(fused)
    try:
        learner = build_algorithm(run.cfg, run.spec)
    finally:
        settings.set_fast_paths(previous)
    learner.load_state_dict(run.algorithm.state_dict())
    return learner


def gru_unroll(repeat: int) -> list[tuple[str, float, float]]:
    from bdps_agents import settings
    from bdps_agents.networks.agent import RecurrentAgent

    out = []
    for groups in (1, 3):
        torch.manual_seed(0)
        agent = RecurrentAgent(37, 6, 64, groups=groups)
        x, weights = torch.randn(32, 51, 4, 37), torch.randn(32, 51, 4, 6)
        index = torch.randint(groups, (32, 51, 4)) if groups > 1 else None

        def forward_backward(agent=agent, x=x, index=index, weights=weights) -> None:
            (agent(x, index) * weights).sum().backward()

        figures = {}
        for fast in (True, False, True, False):
            settings.set_fast_paths(fast)
            figures[fast] = min(
                figures.get(fast, float("inf")), best_ms(forward_backward, repeat, 5)
            )
        settings.set_fast_paths(True)
        what = f"agent unroll forward+backward, k={groups}, LBF 15x15-4p-5f batch (ms)"
        out.append((what, figures[True], figures[False]))
    return out


def adam(repeat: int) -> list[tuple[str, float, float]]:
    out = []
    for mode in ("qmix", "bdps"):
        run = small_run(mode)
        params = list(run.algorithm.optim._module.parameters())
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        figures = [
            best_ms(torch.optim.Adam(params, lr=1e-6, fused=fused).step, repeat, 50)
            for fused in (True, False)
        ]
        out.append((f"Adam step, {mode} ({len(params)} tensors) (ms)", *figures))
        run.close()
    return out


def acting(repeat: int) -> None:
    """Acting: 64 successive steps (role and group decisions included) of 8 envs through the
    policy, as the collector calls it; µs per step."""
    from tianshou.data import Batch

    for mode in ("qmix", "bdps"):
        run = small_run(mode)
        batch, _ = run.buffer.sample(0)
        obs = batch.obs[:8]
        policy = run.policy
        policy.eval()

        def steps(obs=obs, policy=policy) -> None:
            state = None
            for _ in range(64):
                state = policy(Batch(obs=obs, info=Batch()), state).state

        ms = best_ms(steps, repeat, 3) / 64
        print(f"acting step, {mode}, 8 envs: {1000 * ms:.0f} µs")
        run.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--acting-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    np.random.seed(0)
    acting(args.repeat)
    if args.acting_only:
        return
    rows = whole_update(args.repeat) + gru_unroll(args.repeat) + adam(args.repeat)
    for what, fast, plain in rows:
        print(f"{what} fast={fast:.3f} plain={plain:.3f} ratio={plain / fast:.2f}")


if __name__ == "__main__":
    main()
