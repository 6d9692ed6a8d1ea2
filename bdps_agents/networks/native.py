"""Compiled elementwise kernels (``networks/kernels/*.c``), built on first use with the system C
compiler and loaded with ctypes.

The GRU recurrence of a training update runs ~50 steps of a few small operations each; eager
PyTorch pays a dispatch and a pass over memory per operation, which costs more than the
step's matrix product. ``gru_gates.c`` does a step's gate arithmetic (forward or backward) in
one vectorised pass. The library is cached per source, flags and processor
(``$BDPS_KERNEL_CACHE``, default ``~/.cache/bdps-agents/kernels``), so a process after the first
loads it in milliseconds; only a cached library that matches the SHA-256 written beside it
when it was built is loaded (a damaged one is rebuilt). Where there is no compiler, or the
build fails, or ``BDPS_NATIVE_KERNELS=0``, :func:`gru_kernels` returns None and the callers run
the same arithmetic as PyTorch operations (tests compare the two).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from functools import cache
from pathlib import Path

import torch

from bdps_agents.settings import SWITCH_VALUES, env_choice

SOURCE = Path(__file__).parent / "kernels" / "gru_gates.c"
# compile, then link in a second command: linking with -ffast-math would add crtfastmath.o,
# which switches the whole process to flush-to-zero when the library loads
FLAG_SETS = (
    # vectorised expf from glibc's libmvec (needs -ffast-math to be declared)
    (["-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-fPIC"], ["-lmvec", "-lm"]),
    (["-O3", "-march=native", "-fPIC"], ["-lm"]),
    (["-O2", "-fPIC"], ["-lm"]),
)

# None: not chosen yet, BDPS_NATIVE_KERNELS (read at the first use) decides
_enabled: bool | None = None


def native_kernels_enabled() -> bool:
    """Whether the compiled kernels are to be used (when they build): ``BDPS_NATIVE_KERNELS``
    (default on) until :func:`set_native_kernels` says otherwise."""
    global _enabled
    if _enabled is None:
        _enabled = env_choice("BDPS_NATIVE_KERNELS", SWITCH_VALUES, True)
    return _enabled


def set_native_kernels(enabled: bool) -> bool:
    """Use the compiled kernels (when they built) from now on, in this process; returns the
    previous setting. False runs the PyTorch operations instead."""
    global _enabled
    previous, _enabled = native_kernels_enabled(), enabled
    return previous


class GRUKernels:
    """The two entry points of ``gru_gates.c`` on contiguous float32 CPU tensors."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._forward = library.gru_forward
        self._forward.restype = None
        self._forward.argtypes = [ctypes.c_long] * 3 + [ctypes.c_void_p] * 8
        self._backward = library.gru_backward
        self._backward.restype = None
        self._backward.argtypes = [ctypes.c_long] * 3 + [ctypes.c_void_p] * 12

    @staticmethod
    def usable(*tensors: torch.Tensor) -> bool:
        """Whether the kernels can read these tensors in place (float32 values, long groups)."""
        return all(
            t.dtype in (torch.float32, torch.int64) and t.device.type == "cpu" and t.is_contiguous()
            for t in tensors
        )

    def forward(self, group, gi, gh, h_prev, rz, n, hn, h) -> None:
        """One step: ``gi (R, 3H)``, ``gh (R, G * 3H)`` (every group's recurrent gates; row r
        reads ``group[r]``'s, ``group`` a long ``(R,)`` or None when G = 1), ``h_prev (R, H)``
        -> writes ``rz (R, 2H)``, ``n``, ``hn``, ``h (R, H)`` (any leading shape with R rows)."""
        H = h.shape[-1]
        rows = h.numel() // H
        groups = gh.numel() // (rows * 3 * H)
        ptrs = (gi, gh, h_prev, rz, n, hn, h)
        self._forward(rows, H, groups, _ptr(group), *(t.data_ptr() for t in ptrs))

    def backward(
        self, carry_group, carry, d_out, dh_next, z_next, rz, n, hn, h_prev, dh, d_gi, d_gh
    ) -> None:
        """One step back (``gru_gates.c``): writes ``dh (R, H)``, ``d_gi`` and ``d_gh (R, 3H)``;
        ``carry (R, G * H)`` holds every cell's gradient through the next step's product, row r
        reading ``carry_group[r]``'s (None when G = 1); ``z_next`` is the next step's ``rz``."""
        H = dh.shape[-1]
        rows = dh.numel() // H
        groups = carry.numel() // (rows * H)
        ptrs = (carry, d_out, dh_next, z_next, rz, n, hn, h_prev, dh, d_gi, d_gh)
        self._backward(rows, H, groups, _ptr(carry_group), *(t.data_ptr() for t in ptrs))


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def gru_kernels() -> GRUKernels | None:
    """The compiled GRU kernels, or None (disabled, no compiler, or the build failed)."""
    return _load() if native_kernels_enabled() else None


@cache
def _load() -> GRUKernels | None:
    path = build(SOURCE)
    if path is None:
        return None
    try:
        return GRUKernels(ctypes.CDLL(str(path)))
    except (OSError, AttributeError) as exc:  # not a library, or without the entry points
        warnings.warn(
            f"could not load {path} ({exc}); the GRU recurrence runs as PyTorch operations "
            "(slower, same results)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def _checksum_path(library: Path) -> Path:
    """Where the SHA-256 of a built library is kept, beside it."""
    return library.with_suffix(".sha256")


def _intact(library: Path) -> bool:
    """Whether a cached library is the file that was built: loading a cut or altered one
    could crash the process (SIGBUS), so it is checked against the checksum written with it."""
    try:
        expected = _checksum_path(library).read_text().strip()
        return hashlib.sha256(library.read_bytes()).hexdigest() == expected
    except OSError:
        return False


def _cache_dir() -> Path:
    root = os.environ.get("BDPS_KERNEL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "bdps-agents" / "kernels"


def _processor() -> str:
    """What -march=native depends on: the instruction-set flags (Linux), else the platform."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def build(source: Path) -> Path | None:
    """The shared library of ``source``, built now or found in the cache; None (with a warning
    naming the compiler's complaint) when no flag set builds it."""
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        return None
    text = source.read_bytes()
    errors = []
    damaged: Path | None = None
    for compile_flags, link_flags in FLAG_SETS:
        parts = [text, " ".join(compile_flags + link_flags), _processor(), compiler]
        key = hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
        target = _cache_dir() / f"{source.stem}-{key}.so"
        if target.exists():
            if _intact(target):
                return target
            damaged = target  # rebuilt below (or, if that fails, not loaded)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                obj, lib = Path(tmp) / "k.o", Path(tmp) / "k.so"
                for cmd in (
                    [compiler, *compile_flags, "-c", str(source), "-o", str(obj)],
                    [compiler, "-shared", str(obj), "-o", str(lib), *link_flags],
                ):
                    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
                checksum = Path(tmp) / "k.sha256"
                checksum.write_text(hashlib.sha256(lib.read_bytes()).hexdigest())
                # atomic: a concurrent builder finds each file whole or absent; the checksum
                # first, so that a library in the cache always has one
                os.replace(checksum, _checksum_path(target))
                os.replace(lib, target)
            if damaged is not None:
                warnings.warn(
                    f"the cached {damaged} was damaged (not the file that was built); rebuilt it",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return target
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            errors.append(f"{' '.join(compile_flags)}: {detail.strip().splitlines()[-1:]}")
    if damaged is not None:
        errors.append(f"the cached {damaged} is damaged")
    warnings.warn(
        f"could not build {source.name} with {compiler} ({'; '.join(errors)}); the GRU "
        "recurrence runs as PyTorch operations (slower, same results)",
        RuntimeWarning,
        stacklevel=2,
    )
    return None
