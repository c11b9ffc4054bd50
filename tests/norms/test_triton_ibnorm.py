"""The Triton IBNorm kernels equal the reference formula: on CPU through Triton's interpreter,
and compiled on CUDA (tests marked ``gpu``; scripts/gpu_check.sh runs them on a GPU machine).

``TRITON_INTERPRET=1`` must be set before triton is imported and would change every later
Triton use in the test process, so the interpreter checks run in a child process (this file
run as a script) with the variable set there only.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

# (variant, deviation, standardize, order, num_groups, affine, learnable lambda, dtype, lam_role):
# together every variant, deviation, standardization, order and role of lambda; groups; affine off;
# weight without bias; a width that is not a power of two; bf16 input. Every reading against a
# float64 formula: tests/norms/test_ibnorm_readings.py.
CASES = [
    ("L", "raw", "meanvar", "compress_first", 1, "weight-and-bias", True, "float32", "rate"),
    ("S", "std", "rms", "standardize_first", 3, "weight-only", False, "float32", "rate"),
    ("T", "std", "meanvar", "compress_first", 2, "none", True, "float32", "rate"),
    ("L", "raw", "rms", "standardize_first", 1, "weight-and-bias", False, "float32", "rate"),
    ("S", "raw", "meanvar", "compress_first", 4, "weight-and-bias", True, "float32", "rate"),
    ("T", "raw", "rms", "compress_first", 1, "weight-only", False, "bfloat16", "rate"),
    ("S", "raw", "meanvar", "compress_first", 2, "weight-and-bias", True, "float32", "scale"),
    ("L", "std", "rms", "standardize_first", 3, "weight-only", True, "float32", "scale"),
    ("T", "std", "meanvar", "compress_first", 1, "weight-and-bias", True, "float32", "scale"),
    ("S", "std", "rms", "standardize_first", 1, "none", True, "float32", "scale"),
    ("L", "raw", "meanvar", "compress_first", 4, "weight-and-bias", False, "bfloat16", "scale"),
]
ROWS, WIDTH = 7, 24  # 7 rows over 4 backward programs leaves the last one short


def _check_case(case, device: str = "cpu", rows: int = ROWS, width: int = WIDTH) -> None:
    import torch

    from ibnorm_llm.norms import IBNorm, ibnorm_reference
    from ibnorm_llm.norms.triton_ibnorm import ibnorm_triton

    variant, deviation, standardize, order, num_groups, affine, learnable, dtype_name, lam_role = case
    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(0)
    normal = torch.randn(rows, width, generator=gen)
    x = (normal / torch.randn(3, rows, width, generator=gen).pow(2).mean(0).sqrt() + 0.3).to(device, dtype)
    weight = None if affine == "none" else (1 + 0.3 * torch.randn(width, generator=gen)).to(device)
    bias = (0.2 * torch.randn(width, generator=gen)).to(device) if affine == "weight-and-bias" else None
    # under scale the knee is lam itself, in the deviations' units (S takes lam < 1 there)
    lam0 = {"rate": {"S": 2.5, "L": 4.0, "T": 3.0}, "scale": {"S": 0.7, "L": 1.5, "T": 1.2}}[lam_role][variant]
    opts = dict(variant=variant, deviation=deviation, standardize=standardize, order=order,
                num_groups=num_groups, eps=1e-5, lam_role=lam_role)
    grad_out = torch.randn(rows, width, generator=gen).to(device, dtype)

    results = []
    for fn in (ibnorm_reference, ibnorm_triton):
        leaves = {"x": x.clone().requires_grad_()}
        if weight is not None:
            leaves["weight"] = weight.clone().requires_grad_()
        if bias is not None:
            leaves["bias"] = bias.clone().requires_grad_()
        lam = torch.tensor(lam0, device=device, requires_grad=True) if learnable else lam0
        if learnable:
            leaves["lam"] = lam
        y = fn(leaves["x"], leaves.get("weight"), leaves.get("bias"), lam=lam, **opts)
        y.backward(grad_out)
        results.append({"y": y, **{name: t.grad for name, t in leaves.items()}})

    ref, got = results
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    for name in ref:
        assert got[name].dtype == ref[name].dtype, (case, name)
        torch.testing.assert_close(got[name], ref[name], **tol, msg=lambda m, name=name: f"{case} {name}: {m}")

    # The module dispatches to the kernels when asked.
    norm = IBNorm(width, impl="triton", num_groups=num_groups, lam_role=lam_role).to(device)
    assert norm(x.float()).shape == x.shape


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_kernels_match_reference_in_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok ") == len(CASES), done.stdout


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case)))
def test_triton_kernels_match_reference_on_cuda(case):
    _check_case(case, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_triton_kernels_match_reference_on_cuda_at_model_width(dtype_name):
    # Real widths take the kernels' multi-block paths (several row blocks per program, the
    # backward's per-program weight-gradient partials) that the tiny cases above do not.
    for lam_role in ("rate", "scale"):
        _check_case(("L", "raw", "meanvar", "compress_first", 1, "weight-and-bias", True, dtype_name, lam_role),
                    device="cuda", rows=4096, width=2048)


@pytest.mark.gpu
def test_auto_impl_picks_triton_on_cuda():
    import torch

    from ibnorm_llm.norms import IBNorm
    from ibnorm_llm.norms.ibnorm import auto_impl

    x = torch.randn(4, 64, device="cuda")
    assert auto_impl(x, cpu_kernel=True, triton=True) == "triton"
    assert torch.isfinite(IBNorm(64).to("cuda")(x)).all()


if __name__ == "__main__":
    assert os.environ.get("TRITON_INTERPRET") == "1", "run through pytest, or with TRITON_INTERPRET=1"
    import warnings

    # The interpreter evaluates both sides of every tl.where with numpy, which warns about
    # the side that is thrown away (e.g. log of a masked-out lane).
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    for case in CASES:
        _check_case(case)
        print("ok", case, flush=True)
