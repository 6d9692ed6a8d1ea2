"""The learner's fast paths (issue 24) compute what the plain PyTorch operations compute: the
compiled GRU kernels (``networks/native.py``), oneDNN products (``networks/gemm.py``), grouped
products on bucketed rows (``RowGroups``), for every registered algorithm's whole update too."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import subprocess
import sys

import pytest
import torch
from tianshou.algorithm.algorithm_base import torch_train_mode

from bdps_agents.exploration import warmup
from bdps_agents.networks import gemm, native
from bdps_agents.networks.gru_sequence import torch_gru_unroll
from bdps_agents.networks.stacked import RowGroups, StackedGRUCell, StackedLinear, bucket
from bdps_agents.training import build_run


@contextlib.contextmanager
def plain_pytorch():
    """PyTorch operations for the GRU gates and BLAS for the products, inside the block."""
    kernels, backend = native.set_native_kernels(False), gemm.set_cpu_backend("blas")
    try:
        yield
    finally:
        native.set_native_kernels(kernels)
        gemm.set_cpu_backend(backend)


@pytest.fixture
def every_product_on_onednn(monkeypatch):
    """Small test sizes would stay on BLAS (``ONEDNN_MIN_MACS``): send them to oneDNN too."""
    monkeypatch.setattr(gemm, "ONEDNN_MIN_MACS", 0)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("cc") is None,
    reason="the kernels are built with the system C compiler (Linux, cc on PATH)",
)
def test_the_gru_kernels_build_and_load_here():
    assert native.gru_kernels() is not None


def test_a_kernel_that_does_not_build_warns_and_gives_none(tmp_path, monkeypatch):
    monkeypatch.setenv("BDPS_KERNEL_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "broken.c"
    broken.write_text("this is not C;\n")
    with pytest.warns(RuntimeWarning, match=r"could not build broken\.c"):
        assert native.build(broken) is None
    assert native.set_native_kernels(False) is True
    try:
        assert native.gru_kernels() is None  # switched off: the PyTorch path
    finally:
        native.set_native_kernels(True)


@pytest.fixture(scope="module")
def kernel_cache(tmp_path_factory):
    """A kernel cache holding the built GRU kernels (built once for the module)."""
    cache = tmp_path_factory.mktemp("kernels")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BDPS_KERNEL_CACHE", str(cache))
        assert native.build(native.SOURCE) is not None
    return cache


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("cc") is None,
    reason="the kernels are built with the system C compiler (Linux, cc on PATH)",
)
@pytest.mark.parametrize("damage", ["truncated", "emptied", "another library"])
def test_a_damaged_cached_kernel_is_rebuilt_not_loaded(kernel_cache, tmp_path, damage):
    """Issue 33: a cut cached library killed every later run (SIGBUS); a fresh process, as the
    next ``bdps train`` is, rebuilds it with a warning and runs the kernels."""
    cache = tmp_path / "cache"
    shutil.copytree(kernel_cache, cache)
    env = {**os.environ, "BDPS_KERNEL_CACHE": str(cache), "BDPS_NATIVE_KERNELS": "1"}
    load = [
        sys.executable,
        "-c",
        "from bdps_agents.networks import native; print(native.gru_kernels() is not None)",
    ]
    (library,) = cache.glob("*.so")
    built = library.read_bytes()
    if damage == "truncated":
        library.write_bytes(built[: len(built) // 2])
    elif damage == "emptied":
        library.write_bytes(b"")
    else:  # a library without the kernels' entry points
        other = tmp_path / "other.c"
        other.write_text("int something_else(void) { return 1; }\n")
        subprocess.run(["cc", "-shared", "-fPIC", str(other), "-o", str(library)], check=True)
    again = subprocess.run(load, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.strip() == "True", again.stderr
    assert f"the cached {library} was damaged" in again.stderr
    assert library.read_bytes() == built


def test_a_damaged_cached_kernel_that_cannot_be_rebuilt_is_not_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("BDPS_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", "false")  # every build fails
    broken = tmp_path / "gru.c"
    broken.write_text("void gru_forward(void) {}\n")
    key_glob = tmp_path / "cache"
    key_glob.mkdir()
    # a damaged library under every name the cache could give it
    for flags, links in native.FLAG_SETS:
        parts = [broken.read_bytes(), " ".join(flags + links), native._processor(), "false"]
        key = hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
        (key_glob / f"gru-{key}.so").write_bytes(b"")
    with pytest.warns(RuntimeWarning, match=r"could not build gru\.c .*is damaged"):
        assert native.build(broken) is None


def test_oneDNN_is_used_for_large_float32_products_only():
    big, small = torch.randn(600, 64), torch.randn(4, 64)
    weight = torch.randn(64, 192)
    if gemm.cpu_backend() == "onednn":
        assert gemm._onednn(big, 600 * 64 * 192)
    assert not gemm._onednn(small, 4 * 64 * 192)
    assert not gemm._onednn(big.double(), 600 * 64 * 192)
    with pytest.raises(ValueError, match="must be one of onednn, blas"):
        gemm.set_cpu_backend("mkl")
    torch.testing.assert_close(gemm.addmm(None, big, weight), big @ weight, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("rows", [3, 600])
@pytest.mark.parametrize("loss", ["weighted", "sum"])  # a sum's gradient has zero strides
def test_linear_and_its_gradients_match_torch(rows, loss, every_product_on_onednn):
    torch.manual_seed(0)
    x = torch.randn(rows, 2, 37, requires_grad=True)
    w = torch.randn(37, 19, requires_grad=True)
    b = torch.randn(19, requires_grad=True)
    weights = torch.randn(rows, 2, 19) if loss == "weighted" else torch.ones(())
    got, want = gemm.linear(x, w, b), x @ w + b
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad((got * weights).sum(), (x, w, b))
    expected = torch.autograd.grad((want * weights).sum(), (x, w, b))
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-4)


def test_bucket_sizes_cover_the_count_with_little_padding():
    sizes = [bucket(c) for c in range(20_000)]
    assert all(s >= c for c, s in enumerate(sizes))
    assert all(s - c < max(32, c / 16) for c, s in enumerate(sizes))
    assert len(set(sizes)) < 150  # few shapes: oneDNN builds each once


@pytest.mark.parametrize("counts", [(70, 0, 5), (1, 1, 1), (300, 200, 100)])
def test_grouped_rows_go_through_their_own_group_only(counts, every_product_on_onednn):
    """RowGroups on imbalanced, empty and single-row groups: each row's output is its group's
    layer of it, and the gradients are those of a per-row gather of the weights."""
    torch.manual_seed(1)
    index = torch.cat([torch.full((c,), g) for g, c in enumerate(counts)])
    index = index[torch.randperm(len(index))].view(-1, 1)
    layer = StackedLinear(len(counts), 6, 9)
    x = torch.randn(len(index), 1, 6, requires_grad=True)
    got = layer(x, RowGroups.of(index, len(counts)))
    want = torch.einsum("rki,rio->rko", x, layer.weight[index[:, 0]]) + layer.bias[index]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(want)
    params = (x, layer.weight, layer.bias)
    grads = torch.autograd.grad((got * weights).sum(), params)
    expected = torch.autograd.grad((want * weights).sum(), params)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    empty = [g for g, c in enumerate(counts) if c == 0]
    assert all(grads[1][g].abs().sum() == 0 for g in empty)


@pytest.mark.parametrize("mode", ["shared", "slot", "index"])
@pytest.mark.parametrize("T", [1, 7])
def test_the_compiled_gru_unroll_matches_the_pytorch_one(mode, T, every_product_on_onednn):
    """float32 (the kernels' dtype): hidden states and every gradient, kernels and oneDNN
    against PyTorch operations and BLAS."""
    if native.gru_kernels() is None:
        pytest.skip("no compiled kernels on this machine (no C compiler)")
    torch.manual_seed(4)
    G, B, n, D, H = 3, 5, 3, 7, 16
    cell = StackedGRUCell(1 if mode == "shared" else G, D, H)
    index = torch.randint(0, G, (T, B, n)) if mode == "index" else None
    x = torch.randn(T, B, n, D, requires_grad=True)
    h0 = torch.randn(B, n, H, requires_grad=True)
    weights = torch.randn(T, B, n, H)
    params = [x, h0, *cell.parameters()]

    def run():
        hs = cell.unroll(x, h0, index)
        return hs, torch.autograd.grad((hs * weights).sum(), params)

    fast, fast_grads = run()
    with plain_pytorch():
        plain, plain_grads = run()
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    for got, want in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_the_fast_paths_compute_the_same_update(
    algorithm_variant, small_lbf_config, every_product_on_onednn
):
    """One update of every registered algorithm variant from the same state and batch: the
    loss, the gradient norm and every parameter's gradient agree to float tolerance. (Not the
    updated parameters: Adam's first step moves each by ±lr whatever its gradient's size, so a
    gradient of float-noise size may step either way.)"""
    run = build_run(small_lbf_config(algorithm_variant))
    try:
        warmup(run.train_collector, n_episode=6)
        batch, indices = run.buffer.sample(4)
        batch = run.algorithm._preprocess_batch(batch, run.buffer, indices)
        twin = copy.deepcopy(run.algorithm)
        with torch_train_mode(run.algorithm):
            fast = run.algorithm._update_with_batch(batch)
        with plain_pytorch(), torch_train_mode(twin):
            plain = twin._update_with_batch(batch)
        assert fast.loss == pytest.approx(plain.loss, rel=1e-4, abs=1e-6)
        assert fast.grad_norm == pytest.approx(plain.grad_norm, rel=1e-4, abs=1e-6)
        for (name, got), want in zip(
            run.algorithm.named_parameters(), twin.parameters(), strict=True
        ):
            if got.grad is None:
                assert want.grad is None, name
                continue
            scale = float(want.grad.abs().max())
            torch.testing.assert_close(
                got.grad, want.grad, rtol=1e-3, atol=1e-4 * scale + 1e-7, msg=name
            )
    finally:
        run.close()


@pytest.mark.parametrize("native_kernels", [True, False])
def test_an_nn_gru_unrolled_through_the_fused_path_matches_nn_gru(native_kernels):
    """The role selector's encoder (``torch_gru_unroll``): nn.GRU's hidden states and
    gradients, with and without the compiled kernels."""
    torch.manual_seed(5)
    gru = torch.nn.GRU(6, 16, batch_first=True)
    x = torch.randn(40, 5, 6, requires_grad=True)
    params = [x, *gru.parameters()]
    previous = native.set_native_kernels(native_kernels)
    try:
        got = torch_gru_unroll(gru, x)
    finally:
        native.set_native_kernels(previous)
    want = gru(x)[0].transpose(0, 1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(want)
    grads = torch.autograd.grad((got * weights).sum(), params)
    expected = torch.autograd.grad((want * weights).sum(), params)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="one-layer"):
        torch_gru_unroll(torch.nn.GRU(6, 16, num_layers=2, batch_first=True), x)


def test_padding_an_update_with_steps_changes_nothing(algorithm_variant, small_lbf_config):
    """Episodes padded to more steps (``pad_steps_to_multiple``: fewer product shapes) give
    every registered algorithm variant the same loss and gradients: padded steps are masked."""
    run = build_run(small_lbf_config(algorithm_variant))
    try:
        warmup(run.train_collector, n_episode=12)
        buffer = run.buffer
        starts = buffer.sample_indices(0)
        lengths = buffer._episode_len[starts]
        short = starts[lengths < lengths.max()][:4]
        assert len(short) > 0, "the small LBF task should end episodes at different lengths"
        plain = buffer.episode_batch(short)
        padded = buffer.episode_batch(short, pad_multiple=1000)  # to the longest stored
        assert padded.valid.shape[1] == lengths.max() > plain.valid.shape[1]
        twin = copy.deepcopy(run.algorithm)
        with torch_train_mode(run.algorithm):
            got = run.algorithm._update_with_batch(padded)
        with torch_train_mode(twin):
            want = twin._update_with_batch(plain)
        assert got.loss == pytest.approx(want.loss, rel=1e-5, abs=1e-7)
        for (name, p), q in zip(run.algorithm.named_parameters(), twin.parameters(), strict=True):
            if q.grad is not None:
                scale = float(q.grad.abs().max())
                torch.testing.assert_close(
                    p.grad, q.grad, rtol=1e-4, atol=1e-5 * scale + 1e-8, msg=name
                )
    finally:
        run.close()
