"""Float32 matrix products on the CPU through oneDNN where this PyTorch build has it.

PyTorch's CPU wheels send float32 ``mm``/``addmm``/``linear`` to MKL, which picks its kernels by
processor vendor: on AMD processors it runs its AVX2 code, about half of what the same core
does with the AVX-512 kernels of oneDNN, which PyTorch also ships and which picks kernels by
the instructions the processor has (benchmarks/README.md, "Measurements behind design
choices"). The learner's products go through the functions here: oneDNN for float32 CPU
tensors when the build has it, ``torch.addmm``/``torch.mm`` otherwise (other dtypes, CUDA,
builds without oneDNN, or ``BDPS_CPU_MATMUL=blas``). Both compute the same products in float32;
only the order of the additions inside a dot product may differ.

``addmm``/``mm`` are for hand-written backward passes (no autograd); :func:`linear` is
differentiable (its backward is two more products through the same path).
"""

from __future__ import annotations

import torch

from bdps_agents.settings import env_choice

BACKENDS = ("onednn", "blas")


def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


# None: not chosen yet, BDPS_CPU_MATMUL (read at the first product) decides
_backend: str | None = None


def set_cpu_backend(name: str) -> str:
    """Use ``name`` ('onednn' or 'blas') for float32 CPU products from now on (this process);
    returns the previous choice. 'onednn' falls back to 'blas' where the build lacks it."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"CPU matmul backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    previous, _backend = _chosen_backend(), name
    return previous


def _chosen_backend() -> str:
    global _backend
    if _backend is None:
        _backend = env_choice("BDPS_CPU_MATMUL", {b: b for b in BACKENDS}, "onednn")
    return _backend


def cpu_backend() -> str:
    """The backend float32 CPU products use now: 'onednn' or 'blas'."""
    return "onednn" if _chosen_backend() == "onednn" and _onednn_available() else "blas"


# below this many multiply-adds a oneDNN call's fixed cost (~12 µs) outweighs its faster
# kernels and MKL is quicker: acting's few rows stay there (benchmarks/README.md)
ONEDNN_MIN_MACS = 1 << 19


def _onednn(x: torch.Tensor, macs: int) -> bool:
    return (
        macs >= ONEDNN_MIN_MACS
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and cpu_backend() == "onednn"
    )


def addmm(bias: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``bias + a @ b`` for 2-d ``a (N, k)``, ``b (k, m)``, bias ``(m,)`` or None; no autograd.
    Strided (transposed) operands are read in place on both paths."""
    if _onednn(a, a.shape[0] * a.shape[1] * b.shape[1]):
        # oneDNN's inner product takes the weight as (out, in): b.T is a view, not a copy;
        # a broadcast operand (a zero stride: the gradient of a sum) is slow there, so copied
        a = a.contiguous() if 0 in a.stride() else a
        b = b.contiguous() if 0 in b.stride() else b
        return torch.ops.mkldnn._linear_pointwise(a, b.T, bias, "none", [], "")
    return torch.mm(a, b) if bias is None else torch.addmm(bias, a, b)


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for 2-d operands; no autograd."""
    return addmm(None, a, b)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2, weight, bias):
        ctx.save_for_backward(x2, weight)
        ctx.has_bias = bias is not None
        return addmm(bias, x2, weight)

    @staticmethod
    def backward(ctx, grad):
        x2, weight = ctx.saved_tensors
        d_x = mm(grad, weight.T) if ctx.needs_input_grad[0] else None
        d_w = mm(x2.T, grad) if ctx.needs_input_grad[1] else None
        d_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return d_x, d_w, d_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x (..., in) @ weight (in, out) + bias (out,)``, differentiable."""
    if not _onednn(x, x.numel() * weight.shape[-1]):
        return torch.nn.functional.linear(x, weight.T, bias)
    x2 = x.reshape(-1, x.shape[-1])
    return _Linear.apply(x2, weight, bias).view(*x.shape[:-1], weight.shape[-1])


class _GroupedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, counts):
        ctx.save_for_backward(x, weight)
        ctx.counts = counts
        outs = [addmm(bias[g], x[s:e], weight[g]) for g, s, e in _ranges(counts)]
        return torch.cat(outs) if outs else x.new_empty((0, weight.shape[-1]))

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        ranges = _ranges(ctx.counts)
        d_x = d_w = d_b = None
        if ctx.needs_input_grad[0]:
            parts = [mm(grad[s:e], weight[g].T) for g, s, e in ranges]
            d_x = torch.cat(parts) if parts else torch.zeros_like(x)
        if ctx.needs_input_grad[1]:
            d_w = torch.zeros_like(weight)
            for g, s, e in ranges:
                d_w[g] = mm(x[s:e].T, grad[s:e])
        if ctx.needs_input_grad[2]:
            d_b = weight.new_zeros(weight.shape[0], weight.shape[-1])
            for g, s, e in ranges:
                d_b[g] = grad[s:e].sum(0)
        return d_x, d_w, d_b, None


def _ranges(counts: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(group, start, end) of each non-empty group's rows."""
    out, start = [], 0
    for g, count in enumerate(counts):
        if count:
            out.append((g, start, start + count))
        start += count
    return out


def grouped_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, counts: tuple[int, ...]
) -> torch.Tensor:
    """Rows sorted by group, ``x (N, in)`` with ``counts[g]`` rows of group g in turn, each
    through its group's ``weight[g] (in, out)`` and ``bias[g]``; differentiable. One product per
    group on exactly its rows: no padding to the largest group, no work for empty ones."""
    return _GroupedLinear.apply(x, weight, bias, counts)
