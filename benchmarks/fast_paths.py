"""The learner's fast paths against the plain PyTorch ones, each measured in the same run:

1. products (``networks/gemm.py``): oneDNN against BLAS (``torch.addmm``) at the shapes of an
   LBF 15x15-4p-5f update (128 rows per recurrent step, 6,528 rows per all-steps layer), at the
   few rows of acting, and the first call of a new shape (oneDNN builds a kernel per shape);
2. the GRU unroll of the agent network (``networks/gru_sequence.py``), forward and backward,
   with the compiled gate kernels and oneDNN against PyTorch operations and BLAS;
3. one Adam step over QMIX's and BDPS's parameters (fused against PyTorch's default).

    python benchmarks/fast_paths.py [--repeat 5]

Every figure is the best of ``--repeat`` timings (the machine's speed drifts between figures
measured seconds apart). Ends with one ``<what> fast=F plain=P ratio=R`` line per comparison
(ratio = plain / fast).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from bdps_agents.memory import reuse_freed_memory
from bdps_agents.networks import gemm, native
from bdps_agents.networks.agent import RecurrentAgent


def best_ms(fn: Callable[[], object], repeat: int, inner: int) -> float:
    fn()  # warm: kernels built, memory reused
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner * 1000)
    return best


def paths(fast: bool) -> None:
    native.set_native_kernels(fast)
    gemm.set_cpu_backend("onednn" if fast else "blas")


def products(repeat: int) -> list[tuple[str, float, float]]:
    out = []
    for rows, inner, outer in [(128, 64, 192), (6528, 64, 192), (6528, 192, 64), (32, 64, 192)]:
        a, b, bias = torch.randn(rows, inner), torch.randn(inner, outer), torch.randn(outer)
        fast = best_ms(lambda a=a, b=b, bias=bias: gemm.addmm(bias, a, b), repeat, 50)
        plain = best_ms(lambda a=a, b=b, bias=bias: torch.addmm(bias, a, b), repeat, 50)
        out.append((f"product {rows}x{inner}x{outer} (ms)", fast, plain))
    # a shape seen for the first time: oneDNN builds its kernel (why RowGroups buckets rows)
    weight = torch.randn(192, 64)
    firsts = [torch.randn(3001 + i, 64) for i in range(20)]
    start = time.perf_counter()
    for x in firsts:
        torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")
    first = (time.perf_counter() - start) / len(firsts) * 1000
    seen = best_ms(
        lambda: torch.ops.mkldnn._linear_pointwise(firsts[0], weight, None, "none", [], ""),
        repeat,
        20,
    )
    print(f"oneDNN product ~3000x64x192: {first:.3f} ms for a new shape, {seen:.3f} ms once seen")
    return out


def gru_unroll(repeat: int) -> list[tuple[str, float, float]]:
    agent = RecurrentAgent(37, 6, 64, groups=1)
    x, weights = torch.randn(32, 51, 4, 37), torch.randn(32, 51, 4, 6)

    def forward_backward() -> None:
        (agent(x) * weights).sum().backward()

    figures = {}
    for fast in (True, False):
        paths(fast)
        figures[fast] = best_ms(forward_backward, repeat, 5)
    paths(True)
    what = "agent unroll forward+backward, LBF 15x15-4p-5f batch (ms)"
    return [(what, figures[True], figures[False])]


def adam(repeat: int) -> list[tuple[str, float, float]]:
    from bdps_agents.algorithms import algorithm_variants, build_algorithm
    from bdps_agents.config import ExperimentConfig
    from bdps_agents.presets import merge_overrides
    from bdps_agents.training import EnvSpec, make_joint

    out = []
    for mode in ("qmix", "bdps"):
        base = {"env": {"adapter": "lbf", "kwargs": {"task": "15x15-4p-5f"}}}
        overrides = [(k, v, "fast_paths") for k, v in algorithm_variants()[mode].items()]
        cfg = ExperimentConfig.model_validate(merge_overrides(base, overrides))
        algorithm = build_algorithm(cfg, EnvSpec.of(make_joint(cfg.env)))
        params = list(algorithm.optim._module.parameters())
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        figures = [
            best_ms(torch.optim.Adam(params, lr=1e-6, fused=fused).step, repeat, 50)
            for fused in (True, False)
        ]
        out.append((f"Adam step, {mode} ({len(params)} tensors) (ms)", *figures))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    reuse_freed_memory()
    print(
        f"cpu products: {gemm.cpu_backend()}; compiled GRU kernels: "
        f"{'yes' if native.gru_kernels() is not None else 'no (PyTorch operations)'}"
    )
    rows = products(args.repeat) + gru_unroll(args.repeat) + adam(args.repeat)
    for what, fast, plain in rows:
        print(f"{what} fast={fast:.3f} plain={plain:.3f} ratio={plain / fast:.2f}")


if __name__ == "__main__":
    main()
