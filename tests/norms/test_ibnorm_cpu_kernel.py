"""IBNorm's CPU kernel operator (``impl="fused"``) equals the reference formula, forward and backward."""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ibnorm_llm.norms import IBNorm, cpu_ops, ibnorm_reference
from ibnorm_llm.norms.ibnorm import auto_impl, ibnorm_fused

VARIANTS = ("S", "L", "T")
LAM = {"S": 2.5, "L": 4.0, "T": 3.0}
ALL_MODES = list(itertools.product(VARIANTS, ("raw", "std"), ("meanvar", "rms"), ("compress_first", "standardize_first")))

COMPILER = sys.platform != "win32" and shutil.which("c++") is not None and shutil.which("ninja") is not None


@pytest.fixture
def kernel():
    """The CPU kernel operators, built (or skip where they cannot be: no C++ compiler)."""
    reason = cpu_ops.load()
    if reason is not None:
        pytest.skip(f"the CPU kernel is unavailable here: {reason}")


class _OpCalls(TorchDispatchMode):
    """Records the (name, args) of every operator called under it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append((str(func.overloadpacket), args))
        return func(*args, **(kwargs or {}))

    def of(self, name: str) -> list[tuple]:
        return [args for op, args in self.calls if op == f"ibnorm_llm.{name}"]


def _mode_id(mode) -> str:
    return "-".join(mode)


def _heavy_tailed(*shape: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    """Student-t (df=3) values with an offset, so the S knee and the T saturation are both hit."""
    gen = torch.Generator().manual_seed(seed)
    normal = torch.randn(*shape, generator=gen, dtype=torch.float64)
    chi2 = torch.randn(3, *shape, generator=gen, dtype=torch.float64).pow(2).sum(0) / 3
    return (normal / chi2.sqrt() * 1.5 + 0.3).to(dtype)


def _run(fn, x, weight, bias, lam, **opts):
    """Output and gradients of x, weight, bias and lambda for a fixed random upstream gradient."""
    x = x.clone().requires_grad_()
    weight = weight.clone().requires_grad_() if weight is not None else None
    bias = bias.clone().requires_grad_() if bias is not None else None
    lam = lam.clone().requires_grad_() if torch.is_tensor(lam) else lam
    y = fn(x, weight, bias, lam=lam, **opts)
    grad_out = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    y.backward(grad_out)
    grads = {"x": x.grad}
    if weight is not None:
        grads["weight"] = weight.grad
    if bias is not None:
        grads["bias"] = bias.grad
    if torch.is_tensor(lam):
        grads["lam"] = lam.grad
    return y, grads


def _assert_fused_matches_reference(x, weight, bias, lam, **opts):
    y_ref, g_ref = _run(ibnorm_reference, x, weight, bias, lam, **opts)
    y, g = _run(ibnorm_fused, x, weight, bias, lam, **opts)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    assert g.keys() == g_ref.keys()
    for name in g:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"grad {name}: {m}")


@pytest.mark.parametrize("mode", ALL_MODES, ids=_mode_id)
def test_fused_equals_reference_learnable_lambda_groups_affine(mode, kernel):
    variant, deviation, standardize, order = mode
    x = _heavy_tailed(4, 7, 48)
    gen = torch.Generator().manual_seed(2)
    weight, bias = 1 + 0.3 * torch.randn(48, generator=gen), 0.2 * torch.randn(48, generator=gen)
    _assert_fused_matches_reference(
        x, weight, bias, torch.tensor(LAM[variant]), variant=variant, deviation=deviation,
        standardize=standardize, order=order, num_groups=3, eps=1e-5,
    )


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("affine", ["none", "weight-only", "weight-and-bias"])
@pytest.mark.parametrize("num_groups", [1, 4])
def test_fused_equals_reference_fixed_lambda(variant, affine, num_groups, kernel):
    x = _heavy_tailed(32, 64, seed=3)
    weight = None if affine == "none" else torch.linspace(0.5, 1.5, 64)
    bias = torch.linspace(-0.2, 0.2, 64) if affine == "weight-and-bias" else None
    _assert_fused_matches_reference(
        x, weight, bias, LAM[variant], variant=variant, deviation="raw", standardize="meanvar",
        order="compress_first", num_groups=num_groups, eps=1e-6,
    )


@pytest.mark.parametrize("mode", ALL_MODES, ids=_mode_id)
def test_reference_gradcheck_float64(mode):
    # The kernel is tested against the formula's autograd gradients; these check those gradients
    # in every mode (float64 is the formula's: the kernel computes in fp32).
    variant, deviation, standardize, order = mode
    x = _heavy_tailed(3, 8, dtype=torch.float64, seed=4).requires_grad_()
    weight = torch.linspace(0.5, 1.5, 8, dtype=torch.float64).requires_grad_()
    bias = torch.linspace(-0.3, 0.3, 8, dtype=torch.float64).requires_grad_()
    lam = torch.tensor(LAM[variant] / 2 + 0.5, dtype=torch.float64, requires_grad=True)

    def f(x, weight, bias, lam):
        return ibnorm_reference(
            x, weight, bias, variant=variant, lam=lam, deviation=deviation, standardize=standardize,
            order=order, num_groups=2, eps=1e-5,
        )

    assert torch.autograd.gradcheck(f, (x, weight, bias, lam), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_input_keeps_fp32_statistics(variant, kernel):
    x32 = _heavy_tailed(16, 128, seed=5)
    x = x32.to(torch.bfloat16)
    weight = torch.linspace(0.5, 1.5, 128)
    opts = dict(variant=variant, lam=LAM[variant], deviation="raw", standardize="meanvar",
                order="compress_first", num_groups=1, eps=1e-5)
    y = ibnorm_fused(x, weight, None, **opts)
    assert y.dtype == torch.bfloat16
    # The bf16 input computed in fp32 and rounded once: equal to the fp32 result, cast.
    torch.testing.assert_close(y, ibnorm_fused(x.float(), weight, None, **opts).to(torch.bfloat16), rtol=0, atol=0)
    want = ibnorm_reference(x.float(), weight, None, **opts).to(torch.bfloat16)
    torch.testing.assert_close(y.float(), want.float(), rtol=2**-7, atol=1e-2)  # at most one bf16 rounding apart

    xr = x.clone().requires_grad_()
    ibnorm_fused(xr, weight, None, **opts).float().square().sum().backward()
    xf = x.float().requires_grad_()
    ibnorm_reference(xf, weight, None, **opts).to(torch.bfloat16).float().square().sum().backward()
    assert xr.grad.dtype == torch.bfloat16
    torch.testing.assert_close(xr.grad.float(), xf.grad, rtol=1e-2, atol=1e-2)


def _saved_bytes(fn) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("order", ["compress_first", "standardize_first"])
@pytest.mark.parametrize("deviation", ["raw", "std"])
def test_saves_only_input_and_group_statistics(order, deviation, kernel):
    rows, width, groups = 64, 256, 4
    x = torch.randn(rows, width, requires_grad=True)
    weight, bias = torch.ones(width, requires_grad=True), torch.zeros(width, requires_grad=True)
    lam = torch.tensor(4.0, requires_grad=True)
    saved = _saved_bytes(
        lambda: ibnorm_fused(x, weight, bias, variant="L", lam=lam, deviation=deviation, standardize="meanvar",
                             order=order, num_groups=groups, eps=1e-5)
    )
    stats = 4 * rows * groups * 4  # at most four fp32 statistics per group
    assert saved <= x.numel() * 4 + weight.numel() * 4 + lam.numel() * 4 + stats
    layer_norm = _saved_bytes(lambda: torch.nn.functional.layer_norm(x, (width,), weight, bias))
    assert saved <= 1.5 * layer_norm


def test_leading_dims_and_contiguity_do_not_matter(kernel):
    x = _heavy_tailed(3, 64, 5, seed=6).transpose(1, 2)  # (3, 5, 64), not contiguous
    opts = dict(variant="T", lam=3.0, deviation="std", standardize="rms", order="compress_first", num_groups=2, eps=1e-5)
    torch.testing.assert_close(ibnorm_fused(x, None, None, **opts), ibnorm_reference(x, None, None, **opts),
                               rtol=1e-5, atol=1e-5)


def test_auto_impl_runs_the_kernel_on_cpu_up_to_fp32_and_the_formula_on_float64(kernel):
    x = torch.randn(4, 16)
    assert auto_impl(x, cpu_kernel=True, triton=False) == "fused"
    assert auto_impl(x.bfloat16(), cpu_kernel=True, triton=False) == "fused"
    assert auto_impl(x.double(), cpu_kernel=True, triton=True) == "reference"
    assert auto_impl(x, cpu_kernel=False, triton=True) == "reference"
    norm = IBNorm(16, variant="L", lam=4.0, learnable_lam=True)
    with _OpCalls() as calls:
        y = norm(x)
    assert len(calls.of("ibnorm_forward")) == 1
    y.square().sum().backward()
    assert norm.lam_raw.grad is not None and torch.isfinite(norm.lam_raw.grad)
    with _OpCalls() as calls:
        norm.double()(x.double())
    assert not calls.of("ibnorm_forward")


def test_fused_on_a_float64_input_is_a_clear_error(kernel):
    with pytest.raises(RuntimeError, match=r"impl='fused' is the CPU kernel .*torch.float64.*impl='reference' for float64"):
        IBNorm(16, impl="fused").double()(torch.randn(2, 16, dtype=torch.float64))


def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises((RuntimeError, ValueError), match=r"impl='triton'.*(not installed|not CUDA)"):
        IBNorm(16, impl="triton")(torch.randn(2, 16))


@pytest.mark.parametrize("variant", VARIANTS)
def test_extreme_and_empty_inputs(variant, kernel):
    opts = dict(variant=variant, deviation="raw", standardize="meanvar", order="compress_first",
                num_groups=1, eps=1e-5)
    # Deviations of 1e4 saturate tanh and push log1p far out; a constant row has none at all.
    x = torch.stack([torch.linspace(-1e4, 1e4, 32), torch.full((32,), 3.0), _heavy_tailed(32, seed=7) * 1e-3])
    _assert_fused_matches_reference(x, torch.ones(32), torch.zeros(32), LAM[variant], **opts)
    empty = torch.zeros(0, 32, requires_grad=True)
    y = ibnorm_fused(empty, None, None, lam=LAM[variant], **opts)
    y.sum().backward()
    assert y.shape == (0, 32) and empty.grad.shape == (0, 32)


def test_kernel_builds_where_a_compiler_exists():
    # auto falls back to the formula (with a warning) where the kernel does not build, so a C++
    # source that stops compiling would otherwise go unnoticed.
    if not COMPILER:
        pytest.skip("no C++ compiler and ninja here")
    assert cpu_ops.load() is None


WITHOUT_COMPILER_CHILD = """
import warnings
import torch
from ibnorm_llm.norms import IBNorm, NormOptionError, ibnorm_reference

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    norm = IBNorm(16, variant="L", lam=4.0, deviation="raw")
assert any("CPU kernel is unavailable" in str(w.message) and "install a C++ compiler" in str(w.message)
           for w in caught), [str(w.message) for w in caught]
x = torch.randn(4, 16)
want = ibnorm_reference(x, norm.weight, norm.bias, variant="L", lam=4.0, deviation="raw", standardize="meanvar",
                        order="compress_first", num_groups=1, eps=1e-5)
torch.testing.assert_close(norm(x), want, rtol=0, atol=0)
try:
    IBNorm(16, impl="fused")
except NormOptionError as err:
    assert "impl='fused': the CPU kernel is unavailable here" in str(err) and "impl='reference'" in str(err), err
else:
    raise AssertionError("impl='fused' without a compiler built")
print("fallback ok")
"""


def test_without_a_compiler_auto_warns_and_takes_the_formula_and_fused_refuses(tmp_path):
    # A fresh process: the operators, once loaded, stay for the life of a process.
    env = {**os.environ, "CXX": str(tmp_path / "no-such-c++"), "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", WITHOUT_COMPILER_CHILD], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "fallback ok" in done.stdout, done.stderr[-3000:]


def test_kernel_splits_rows_across_torch_threads(kernel):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = _heavy_tailed(301, 256, seed=9)  # 77k elements: two row blocks of unequal size
        _assert_fused_matches_reference(
            x, torch.linspace(0.5, 1.5, 256), torch.linspace(-1, 1, 256), torch.tensor(3.0), variant="T",
            deviation="std", standardize="meanvar", order="compress_first", num_groups=2, eps=1e-5,
        )
    finally:
        torch.set_num_threads(threads)


THREADS_CHILD = """
import sys
from pathlib import Path
try:  # scikit-learn carries its own OpenMP runtime (libgomp-<hash>.so): loaded first on purpose
    import sklearn.cluster  # noqa: F401
except ImportError:
    pass
import torch
from ibnorm_llm.norms import cpu_ops, ibnorm_reference
from ibnorm_llm.norms.ibnorm import ibnorm_fused

assert cpu_ops.load() is None, cpu_ops.load()
maps = open("/proc/self/maps").read().splitlines()
runtimes = {line.split()[-1] for line in maps if line.split()[-1].rsplit("/", 1)[-1] == "libgomp.so.1"}
assert len(runtimes) == 1, runtimes  # the kernel runs on torch's OpenMP runtime, not a second one
torch.set_num_threads(2)
gen = torch.Generator().manual_seed(0)
x = (torch.randn(301, 256, generator=gen) * 2).requires_grad_()
opts = dict(variant="L", lam=3.0, deviation="raw", standardize="meanvar", order="compress_first",
            num_groups=2, eps=1e-5)
w, b = torch.linspace(0.5, 1.5, 256), torch.linspace(-1, 1, 256)
y = ibnorm_fused(x, w, b, **opts)
(gx,) = torch.autograd.grad(y.square().sum(), x)
y_ref = ibnorm_reference(x, w, b, **opts)
(gx_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-4)
print("threads ok")
"""


def test_kernel_shares_torchs_openmp_runtime_whatever_was_imported_first(kernel):
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/maps")
    done = subprocess.run([sys.executable, "-c", THREADS_CHILD], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "threads ok" in done.stdout, done.stderr[-3000:]


@pytest.mark.parametrize(
    ("variant", "deviation", "learnable", "from_c"),
    [("S", "raw", False, False), ("L", "raw", False, True), ("L", "std", True, True), ("T", "raw", False, True),
     ("T", "std", False, False), ("T", "raw", True, False)],
)
def test_backward_runs_from_the_compressed_deviations_where_it_is_exact(variant, deviation, learnable, from_c, kernel):
    # One activation is saved either way: the input, or c = sign(u) f(|u|) where the backward can
    # recover everything from it (T cannot recover u where tanh saturates, so not when it needs u).
    assert cpu_ops.saves_compressed(variant, deviation=deviation, order="compress_first",
                                    learnable_lam=learnable) is from_c
    x = _heavy_tailed(32, 64, seed=11).requires_grad_()  # heavy tails: T saturates
    lam = torch.tensor(4.0, requires_grad=True) if learnable else 4.0
    seen = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: seen.append(t) or t, lambda t: t):
        ibnorm_fused(x, None, None, variant=variant, lam=lam, deviation=deviation, standardize="meanvar",
                     order="compress_first", num_groups=1, eps=1e-5)
    activations = [t for t in seen if t.shape == x.shape]
    assert len(activations) == 1
    assert (activations[0].data_ptr() == x.data_ptr()) is not from_c
    # _run makes a tensor lambda learnable (a leaf of its own)
    _assert_fused_matches_reference(x.detach(), None, None, torch.tensor(4.0) if learnable else 4.0,
                                    variant=variant, deviation=deviation, standardize="meanvar",
                                    order="compress_first", num_groups=1, eps=1e-5)


def test_no_compressed_copy_is_written_without_a_backward(kernel):
    # c only serves the backward: under no_grad (evaluation, generation) the kernel is not asked
    # for it, and the output is the same.
    x = _heavy_tailed(8, 64, seed=14)
    opts = dict(variant="L", lam=4.0, deviation="raw", standardize="meanvar", order="compress_first", num_groups=1,
                eps=1e-5)
    with torch.no_grad(), _OpCalls() as calls:
        y_eval = ibnorm_fused(x, None, None, **opts)
    with _OpCalls() as train_calls:
        y_train = ibnorm_fused(x.clone().requires_grad_(), None, None, **opts)
    save_c = [args[-1] for args in calls.of("ibnorm_forward") + train_calls.of("ibnorm_forward")]
    assert save_c == [False, True]
    torch.testing.assert_close(y_eval, y_train.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("standardize", ["meanvar", "rms"])
def test_kernel_backward_from_c_equals_backward_from_the_input(variant, standardize, kernel):
    # The kernel can run every variant's backward from c (saves_compressed picks where it pays).
    x = _heavy_tailed(16, 96, seed=12)
    gy = torch.randn(16, 96, generator=torch.Generator().manual_seed(13))
    weight, bias = torch.linspace(0.5, 1.5, 96), torch.linspace(-1, 1, 96)
    lam = torch.tensor(3.0)
    options = (variant, "raw", standardize, "compress_first", 2)
    forward, backward = torch.ops.ibnorm_llm.ibnorm_forward, torch.ops.ibnorm_llm.ibnorm_backward
    y, stats, c = forward(x, weight, bias, lam, *options, 1e-5, True)
    y_again, _, no_c = forward(x, weight, bias, lam, *options, 1e-5, False)
    assert no_c.numel() == 0
    torch.testing.assert_close(y, y_again, rtol=1e-6, atol=1e-6)  # the sums may be taken in another order
    from_x = backward(gy, x, weight, stats, lam, *options, False, True, True, False)
    from_c = backward(gy, c, weight, stats, lam, *options, True, True, True, False)
    for got, want in zip(from_c[:3], from_x[:3], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("fn", "low", "high", "reference", "max_rel_error"),
    [
        ("log1p", 0.0, 1e6, torch.log1p, 3e-7),
        ("tanh", 0.0, 20.0, torch.tanh, 4e-7),
        ("expm1", -100.0, 0.0, torch.expm1, 2e-7),
        ("exp2", -125.0, 0.0, torch.exp2, 3e-7),
    ],
)
def test_kernel_elementwise_approximations_are_accurate(fn, low, high, reference, max_rel_error, kernel):
    # The polynomial and rational approximations the kernel is built on (csrc/fast_math.h), against
    # float64 on a dense grid, tiny arguments included (where log1p, tanh and expm1 must stay relative).
    span = torch.cat([torch.linspace(low, high, 200_001, dtype=torch.float64),
                      torch.logspace(-30, 0, 20_001, dtype=torch.float64) * (high if high > 0 else low)])
    x = span.float()
    want = reference(x.double())
    got = cpu_ops.elementwise(fn, x).double()
    rel = ((got - want).abs() / want.abs().clamp_min(torch.finfo(torch.float32).tiny))
    assert rel.max() < max_rel_error, f"{fn}: max relative error {rel.max():.2e} at x = {x[rel.argmax()]:.6g}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_backward_is_the_kernel_alone(variant, kernel):
    # The operator's other outputs (statistics, c) only serve the backward: autograd must not
    # fill activation-sized zero gradients for them (that cost L and T a memset per call).
    norm = IBNorm(64, variant=variant)
    x = torch.randn(32, 64, requires_grad=True)
    y = norm(x)
    grad = torch.randn(32, 64)
    with _OpCalls() as calls:
        y.backward(grad)
    assert [op for op, _ in calls.calls if not op.endswith("detach")] == ["ibnorm_llm.ibnorm_backward"]


def test_a_copy_of_the_norm_code_reuses_the_operators_already_registered(tmp_path, monkeypatch, kernel):
    # A checkpoint carries a flat copy of these modules (see models/modeling_norm_lm.py). Loaded with
    # remote code in a process that has ibnorm_llm, the copy must use the operators already there,
    # without csrc/ beside it and without defining or registering them a second time.
    copy = tmp_path / "norm_code_copy"
    copy.mkdir()
    for source in Path(cpu_ops.__file__).parent.glob("*.py"):
        shutil.copy(source, copy / source.name)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry = importlib.import_module("norm_code_copy")
        if importlib.util.find_spec("triton") is not None:
            importlib.import_module("ibnorm_llm.norms.triton_ibnorm")
            importlib.import_module("norm_code_copy.triton_ibnorm")  # the Triton operators exist already
        norm = registry.build_norm("ibnorm", 32, variant="L")
        x = _heavy_tailed(4, 32, seed=15).requires_grad_()
        with _OpCalls() as calls:
            y = norm(x)
        assert calls.of("ibnorm_forward")
        y.square().sum().backward()
        want = IBNorm(32, variant="L", impl="reference")(x.detach())
        torch.testing.assert_close(y.detach(), want, rtol=1e-5, atol=1e-5)
    finally:
        for name in [name for name in sys.modules if name.startswith("norm_code_copy")]:
            del sys.modules[name]


WITHOUT_SOURCES_CHILD = """
import importlib.util
import warnings
from ibnorm_llm.norms import IBNorm, cpu_ops

# A checkpoint's copy of the norm code: no csrc/ beside it and no installed ibnorm_llm to build from.
cpu_ops.CSRC = cpu_ops.CSRC.parent / "no-such-csrc"
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *args: None if name == "ibnorm_llm" else find_spec(name, *args)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    IBNorm(8, variant="L")
message = " ".join(str(w.message) for w in caught)
assert "install the ibnorm_llm package" in message and "C++ compiler" not in message, message
print("names the package")
"""


def test_without_the_package_the_warning_names_the_package_not_a_compiler(tmp_path):
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", WITHOUT_SOURCES_CHILD], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "names the package" in done.stdout, done.stderr[-3000:]


def test_a_build_killed_midway_does_not_block_later_builds(tmp_path, monkeypatch):
    """torch's own build marker (<build dir>/lock) outlives a killed build and would make every later
    process wait forever; our builds hold an OS lock and clear a marker no running build owns."""
    from torch.utils import cpp_extension

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    seen = {}

    def fake_load(name, **_):
        build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
        seen["stale marker"] = (build_dir / "lock").exists()
        seen["held"] = (build_dir / "ibnorm_llm_build.lock").exists()

    name = f"ibnorm_llm_cpu_{cpu_ops._cpu_key()}_{cpu_ops._source_key(cpu_ops.CSRC)}"
    build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
    (build_dir / "lock").write_text("")  # what a killed build leaves behind
    monkeypatch.setattr(cpp_extension, "load", fake_load)
    cpu_ops._build()
    assert seen == {"stale marker": False, "held": True}
