"""IBNorm's readings: deviation units (raw, std) x the role of lambda (rate, scale) x variant (S, L, T).

Every implementation (the formula, the CPU operator, the Triton operators) is checked against a
float64 formula written out here, independently of the package's ``compress``, forward and
backward (the gradients of x, weight, bias and lambda). The Triton checks run in Triton's
interpreter in a child process (this file run as a script, as tests/norms/test_triton_ibnorm.py
does), since ``TRITON_INTERPRET=1`` must be set before triton is imported.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from ibnorm_llm.norms import (
    IBNorm,
    NormSpec,
    check_norm_spec,
    compress,
    compression_slope,
    cpu_ops,
    ibnorm_reference,
    option_defaults,
)
from ibnorm_llm.norms.ibnorm import DEFAULT_DEVIATION, DEFAULT_LAM_ROLE, ibnorm_fused
from ibnorm_llm.norms.validation import NormOptionError

VARIANTS = ("S", "L", "T")
ROLES = ("rate", "scale")
DEVIATIONS = ("raw", "std")
READINGS = list(itertools.product(DEVIATIONS, ROLES, VARIANTS))
# lambda per (role, variant): under scale, S takes lam < 1 (its knee is lam itself).
LAM = {("rate", "S"): 2.5, ("rate", "L"): 4.0, ("rate", "T"): 3.0,
       ("scale", "S"): 0.7, ("scale", "L"): 1.0, ("scale", "T"): 1.2}
EPS = 1e-5


def _reading_id(reading) -> str:
    return "-".join(reading)


# ---- the float64 formula, written out here ----


def _f64(r: torch.Tensor, variant: str, lam: torch.Tensor, role: str) -> torch.Tensor:
    """f_lam(r) for r >= 0 (docs/norms.md): rate g(lam r) / lam, scale lam g(r / lam); S's own knees."""
    if role == "rate":
        if variant == "S":
            return torch.where(r <= 1 / lam, r, 1 / lam + (r - 1 / lam) / lam)
        if variant == "L":
            return torch.log1p(lam * r) / lam
        return torch.tanh(lam * r) / lam
    if variant == "S":
        return torch.where(r <= lam, r, lam + (r - lam) / 2)
    if variant == "L":
        return lam * torch.log1p(r / lam)
    return lam * torch.tanh(r / lam)


def _ibnorm64(x, weight, bias, lam, *, variant, role, deviation, num_groups, eps):
    """compress_first, meanvar: y = w * standardize(mu + sign(d) f(r)) + b per group, all in float64."""
    shape = x.shape
    g = x.reshape(*shape[:-1], num_groups, shape[-1] // num_groups)
    mu = g.mean(-1, keepdim=True)
    d = g - mu
    r = d.abs()
    if deviation == "std":
        r = r / torch.sqrt((d * d).mean(-1, keepdim=True) + eps)
    s = mu + torch.sign(d) * _f64(r, variant, lam, role)
    m = s.mean(-1, keepdim=True)
    shat = (s - m) / torch.sqrt(((s - m) ** 2).mean(-1, keepdim=True) + eps)
    return shat.reshape(shape) * weight + bias


def _inputs(rows: int, width: int, seed: int = 0):
    """Heavy-tailed x (Student-t, df = 3, with an offset), an affine and an upstream gradient, fp32."""
    gen = torch.Generator().manual_seed(seed)
    normal = torch.randn(rows, width, generator=gen, dtype=torch.float64)
    chi2 = torch.randn(3, rows, width, generator=gen, dtype=torch.float64).pow(2).sum(0) / 3
    x = (normal / chi2.sqrt() * 1.5 + 0.3).float()
    weight = (1 + 0.3 * torch.randn(width, generator=gen)).float()
    bias = (0.2 * torch.randn(width, generator=gen)).float()
    grad_out = torch.randn(rows, width, generator=gen).float()
    return x, weight, bias, grad_out


def _forward_backward(fn, x, weight, bias, lam, grad_out, **opts):
    """y and the gradients of x, weight, bias and lam (a learnable 0-d tensor)."""
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias, torch.tensor(lam, dtype=x.dtype))]
    y = fn(*leaves[:3], leaves[3], **opts)
    y.backward(grad_out.to(y.dtype))
    return {"y": y.detach(), **{name: t.grad for name, t in zip(("x", "weight", "bias", "lam"), leaves, strict=True)}}


def _want(x, weight, bias, grad_out, *, variant, role, deviation, num_groups, eps=EPS):
    def formula(x, w, b, lam):
        return _ibnorm64(x, w, b, lam, variant=variant, role=role, deviation=deviation, num_groups=num_groups, eps=eps)

    return _forward_backward(formula, x.double(), weight.double(), bias.double(), LAM[role, variant], grad_out)


def _impl(fn, *, variant, role, deviation, num_groups, eps=EPS):
    def run(x, w, b, lam):
        return fn(x, w, b, lam=lam, variant=variant, lam_role=role, deviation=deviation, standardize="meanvar",
                  order="compress_first", num_groups=num_groups, eps=eps)

    return run


def _assert_matches(got: dict, want: dict, what: str, rtol: float, atol: float) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name].double(), want[name].double(), rtol=rtol, atol=atol,
                                   msg=lambda m, name=name: f"{what} {name}: {m}")


def _check_reading(reading, impls: dict, rows: int, width: int, num_groups: int) -> None:
    """Each of ``impls`` (fp32) against the float64 formula, and against the fp32 reference to 1e-5."""
    deviation, role, variant = reading
    x, weight, bias, grad_out = _inputs(rows, width)
    lam = LAM[role, variant]
    # The data reach both sides of the knee (1/lam under rate, lam under scale), where the slope changes.
    g = x.double().reshape(rows, num_groups, -1)
    d = g - g.mean(-1, keepdim=True)
    r = d.abs() / (d.pow(2).mean(-1, keepdim=True) + EPS).sqrt() if deviation == "std" else d.abs()
    beyond = (r > (1 / lam if role == "rate" else lam)).double().mean().item()
    assert 0.05 < beyond < 0.95, (reading, beyond)

    opts = dict(variant=variant, role=role, deviation=deviation, num_groups=num_groups)
    want = _want(x, weight, bias, grad_out, **opts)
    # The formula itself, in float64, equals the written-out one to rounding.
    ref64 = _forward_backward(_impl(ibnorm_reference, **opts), x.double(), weight.double(), bias.double(), lam,
                              grad_out)
    _assert_matches(ref64, want, f"{reading} reference float64", rtol=1e-9, atol=1e-9)
    ref32 = _forward_backward(_impl(ibnorm_reference, **opts), x, weight, bias, lam, grad_out)
    _assert_matches(ref32, want, f"{reading} reference float32", rtol=1e-4, atol=1e-4)
    for name, fn in impls.items():
        got = _forward_backward(_impl(fn, **opts), x, weight, bias, lam, grad_out)
        assert got["y"].dtype == torch.float32
        _assert_matches(got, want, f"{reading} {name}", rtol=1e-4, atol=1e-4)
        _assert_matches(got, ref32, f"{reading} {name} against the fp32 reference", rtol=1e-5, atol=1e-5)


# ---- every implementation against the float64 formula ----


@pytest.mark.parametrize("reading", READINGS, ids=_reading_id)
def test_reference_and_cpu_operator_match_the_float64_formula(reading):
    if cpu_ops.load() is not None:
        pytest.skip(f"the CPU kernel is unavailable here: {cpu_ops.load()}")
    _check_reading(reading, {"fused": ibnorm_fused}, rows=20, width=48, num_groups=2)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_operators_match_the_float64_formula_in_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok ") == len(READINGS), done.stdout


@pytest.mark.parametrize("reading", [r for r in READINGS if r[::2] != ("std", "T")], ids=_reading_id)
def test_cpu_operator_backward_from_c_in_every_reading(reading):
    # The operator can run the backward from the saved c in either role (saves_compressed picks
    # where it pays, the same choice under both): equal to the backward from the input. Not T in
    # std units, nor T's lambda gradient: they need u, which c does not give back where tanh saturates.
    if cpu_ops.load() is not None:
        pytest.skip(f"the CPU kernel is unavailable here: {cpu_ops.load()}")
    deviation, role, variant = reading
    x, weight, bias, gy = _inputs(16, 48, seed=3)
    lam = torch.tensor(LAM[role, variant])
    options = (variant, deviation, "meanvar", "compress_first", 2)
    forward, backward = torch.ops.ibnorm_llm.ibnorm_forward, torch.ops.ibnorm_llm.ibnorm_backward
    y, stats, c = forward(x, weight, bias, lam, *options, EPS, True, lam_role=role)
    want = ibnorm_reference(x, weight, bias, lam=lam, variant=variant, lam_role=role, deviation=deviation,
                            standardize="meanvar", order="compress_first", num_groups=2, eps=EPS)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    need_lam = variant != "T"
    from_x = backward(gy, x, weight, stats, lam, *options, False, True, True, need_lam, lam_role=role)
    from_c = backward(gy, c, weight, stats, lam, *options, True, True, True, need_lam, lam_role=role)
    last = 4 if need_lam else 3
    for got, expected in zip(from_c[:last], from_x[:last], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# ---- the roles' limits and ranges ----


@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_scale_role_tends_to_layernorm_as_lambda_grows(variant, impl):
    if impl == "fused" and cpu_ops.load() is not None:
        pytest.skip("the CPU kernel is unavailable here")
    torch.manual_seed(0)
    x = torch.randn(32, 24) * 2
    layer = F.layer_norm(x, (24,))
    gaps = [(IBNorm(24, variant=variant, lam=lam, lam_role="scale", deviation="raw", impl=impl)(x) - layer).abs().max().item()
            for lam in (1.0, 1e2, 1e4)]
    assert gaps[0] > 0.1
    assert gaps[2] <= gaps[1] + 1e-6
    assert gaps[2] < 1e-3  # L's gap shrinks like 1/lambda, T's like 1/lambda^2; S is exact once lambda > max |d|
    if variant == "S":
        assert gaps[1] < 1e-5


def test_scale_role_s_takes_lambda_below_one():
    norm = IBNorm(16, variant="S", lam=0.5, lam_role="scale")
    assert norm.lam == 0.5
    x = torch.distributions.StudentT(3.0).sample((8, 16))
    assert (norm(x) - F.layer_norm(x, (16,))).abs().max() > 0.1  # compresses: not LayerNorm
    d = torch.tensor([-2.0, -0.5, 0.25, 0.5, 1.5], dtype=torch.float64)
    torch.testing.assert_close(compress(d, "S", 0.5, "scale"),
                               torch.tensor([-1.25, -0.5, 0.25, 0.5, 1.0], dtype=torch.float64))
    # learnable: lambda = softplus(theta) under scale (no floor at 1), so it starts at 0.5 and stays > 0
    learnable = IBNorm(16, variant="S", lam=0.5, lam_role="scale", learnable_lam=True)
    assert learnable.lam_value.item() == pytest.approx(0.5, rel=1e-6)
    learnable(x).pow(3).sum().backward()
    assert learnable.lam_raw.grad is not None and learnable.lam_raw.grad.abs() > 0
    with torch.no_grad():
        learnable.lam_raw.fill_(-40.0)
    assert 0 < learnable.lam_value.item() < 1


def test_rate_role_s_below_one_is_still_an_error_naming_lam():
    with pytest.raises(NormOptionError, match=r"lam=0.5: must be a finite number >= 1 for variant S with lam_role rate"):
        IBNorm(16, variant="S", lam=0.5, lam_role="rate")
    with pytest.raises(NormOptionError, match=r"lam=1.0: must be > 1 for variant S with lam_role rate and learnable_lam"):
        IBNorm(16, variant="S", lam=1.0, lam_role="rate", learnable_lam=True)
    # the floor is the rate role's alone: S under scale with learnable lambda takes lam = 1
    assert IBNorm(16, variant="S", lam=1.0, lam_role="scale", learnable_lam=True).lam_value.item() == pytest.approx(1.0)
    norm = IBNorm(16, variant="S", lam=3.0, lam_role="rate", learnable_lam=True)
    with torch.no_grad():
        norm.lam_raw.fill_(-40.0)
    assert norm.lam_value.item() >= 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lam_role": "knee"}, r"lam_role='knee': must be one of rate, scale"),
        ({"lam_role": "scale", "lam": 0.0}, r"lam=0.0: must be a finite number > 0"),
        ({"lam_role": "scale", "variant": "S", "lam": -1.0}, r"lam=-1.0: must be a finite number > 0"),
    ],
)
def test_invalid_reading_options_name_the_option(options, message):
    with pytest.raises(NormOptionError, match=message):
        IBNorm(16, **options)
    with pytest.raises(NormOptionError, match=message):
        check_norm_spec(NormSpec("ibnorm", **options))


def test_the_defaults_are_the_module_constants_and_the_reading_is_a_config_option():
    defaults = option_defaults("ibnorm")
    assert defaults["lam_role"] == DEFAULT_LAM_ROLE and defaults["deviation"] == DEFAULT_DEVIATION
    assert IBNorm(8).lam_role == DEFAULT_LAM_ROLE and IBNorm(8).deviation == DEFAULT_DEVIATION
    check_norm_spec(NormSpec("ibnorm", variant="T", lam=0.5, lam_role="scale", deviation="std"))
    assert "lam_role=scale" in repr(IBNorm(8, lam_role="scale"))


def test_without_a_role_the_functions_and_operators_mean_rate():
    # Callers from before the option (a checkpoint's copy of the norm code) keep their meaning.
    x = torch.distributions.StudentT(3.0).sample((6, 16))
    opts = dict(variant="L", lam=3.0, deviation="raw", standardize="meanvar", order="compress_first", num_groups=1,
                eps=EPS)
    rate = ibnorm_reference(x, None, None, **opts, lam_role="rate")
    torch.testing.assert_close(ibnorm_reference(x, None, None, **opts), rate, rtol=0, atol=0)
    assert (ibnorm_reference(x, None, None, **opts, lam_role="scale") - rate).abs().max() > 0.1
    if cpu_ops.load() is None:
        xr = x.clone().requires_grad_()
        y = torch.ops.ibnorm_llm.ibnorm_forward(xr, None, None, torch.tensor(3.0), "L", "raw", "meanvar",
                                                "compress_first", 1, EPS, False)[0]
        torch.testing.assert_close(y, rate, rtol=1e-5, atol=1e-5)
        y.sum().backward()  # the autograd registration fills in the default too
        assert xr.grad is not None


# ---- scale invariance ----


@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_std_deviation_is_scale_invariant_and_raw_is_not(variant, role, impl):
    # IBNorm(c x) = IBNorm(x) under deviation std: the deviations are measured in the group's own
    # std. Only eps breaks it, by about eps / var(c x): eps = 1e-10 against a variance of at least
    # 1e-4 (c = 1e-2) keeps that below 1e-6, under the tolerance (float64: 1e-6; fp32: 2e-5).
    if impl == "fused" and cpu_ops.load() is not None:
        pytest.skip("the CPU kernel is unavailable here")
    dtype = torch.float64 if impl == "reference" else torch.float32
    tol = 1e-6 if dtype == torch.float64 else 2e-5
    x = torch.distributions.StudentT(3.0).sample((32, 48)).to(dtype)
    lam = LAM[role, variant]
    std = IBNorm(48, variant=variant, lam=lam, lam_role=role, deviation="std", eps=1e-10, impl=impl).to(dtype)
    raw = IBNorm(48, variant=variant, lam=lam, lam_role=role, deviation="raw", eps=1e-10, impl=impl).to(dtype)
    with torch.no_grad():
        base = std(x)
        for c in (1e-2, 1.0, 1e2):
            torch.testing.assert_close(std(c * x), base, rtol=tol, atol=tol, msg=lambda m, c=c: f"c={c}: {m}")
        # raw deviations: the same lambda compresses differently at each scale (S far past its knee
        # is nearly linear again, so compare every scale with the smallest, where all are nearly LayerNorm)
        small = raw(1e-2 * x)
        assert max((raw(c * x) - small).abs().max().item() for c in (1.0, 1e2)) > 0.1


# ---- the slope of the compression ----


def test_compression_slope_hand_values():
    d = torch.tensor([0.3, -0.5, 0.7, -3.0], dtype=torch.float64)
    # S, rate, lam = 2: knee 1/2, slope 1/2 beyond; scale, lam = 2: knee 2, slope 1/2 beyond
    assert compression_slope(d, "S", 2.0, "rate").tolist() == [1.0, 1.0, 0.5, 0.5]
    assert compression_slope(d, "S", 2.0, "scale").tolist() == [1.0, 1.0, 1.0, 0.5]
    # S, rate, lam = 4: slope 1/4 beyond 1/4
    assert compression_slope(d, "S", 4.0).tolist() == [0.25, 0.25, 0.25, 0.25]
    # L: 1 / (1 + lam r) (rate), 1 / (1 + r / lam) (scale)
    L = torch.tensor([0.0, 0.5, -36.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(compression_slope(L, "L", 4.0, "rate"),
                               torch.tensor([1.0, 1 / 3, 1 / 145, 1 / 17], dtype=torch.float64))
    torch.testing.assert_close(compression_slope(L, "L", 4.0, "scale"),
                               torch.tensor([1.0, 1 / 1.125, 0.1, 0.5], dtype=torch.float64))
    # T: 1 - tanh(lam r)^2 (rate), 1 - tanh(r / lam)^2 (scale)
    T = torch.tensor([0.0, math.atanh(math.sqrt(0.9)) / 2, -2 * math.atanh(0.6)], dtype=torch.float64)
    torch.testing.assert_close(compression_slope(T[:2], "T", 2.0, "rate"),
                               torch.tensor([1.0, 0.1], dtype=torch.float64))
    torch.testing.assert_close(compression_slope(T[[0, 2]], "T", 2.0, "scale"),
                               torch.tensor([1.0, 0.64], dtype=torch.float64))
    # The share beyond the knee, f' < 0.1, by hand: L rate lam = 4 has f' < 0.1 where r > 9/4.
    r = torch.tensor([0.1, -1.0, 2.2, 2.3, -5.0, 9.0], dtype=torch.float64)
    assert (compression_slope(r, "L", 4.0) < 0.1).double().mean().item() == pytest.approx(0.5)
    # lam as a tensor (learnable), keeps d's dtype
    slope = compression_slope(d, "S", torch.tensor(2.0), "scale")
    assert slope.dtype == torch.float64 and slope.tolist() == [1.0, 1.0, 1.0, 0.5]
    with pytest.raises(NormOptionError, match="lam_role='x'"):
        compression_slope(d, "L", 2.0, "x")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_compression_slope_is_the_derivative_and_at_most_one(variant, role):
    lam = {"rate": 4.0, "scale": 0.5}[role]  # scale at 0.5: S's lambda below 1 too
    d = torch.linspace(-3, 3, 1201, dtype=torch.float64)
    d = d[d != 0].requires_grad_()  # |d| has no derivative at 0
    (deriv,) = torch.autograd.grad(_f64(d.abs(), variant, torch.tensor(lam, dtype=torch.float64), role).sum(), d)
    slope = compression_slope(d.detach(), variant, lam, role)
    torch.testing.assert_close(slope, deriv.abs(), rtol=1e-12, atol=1e-12)
    assert (slope > 0).all() and (slope <= 1).all()
    # and compress is the written-out f in both roles
    torch.testing.assert_close(compress(d.detach(), variant, lam, role),
                               torch.sign(d.detach()) * _f64(d.detach().abs(), variant, torch.tensor(lam), role))


@pytest.mark.parametrize("variant", VARIANTS)
def test_scale_role_reference_gradcheck_float64(variant):
    torch.manual_seed(0)
    norm = IBNorm(8, variant=variant, lam=0.8, lam_role="scale", deviation="std", num_groups=2, learnable_lam=True,
                  impl="reference").double()
    with torch.no_grad():
        norm.weight.add_(torch.randn_like(norm.weight) * 0.3)
    x = (torch.randn(3, 8, dtype=torch.float64) * 2).requires_grad_()
    params = tuple(norm.parameters())

    def f(inp, *_):
        return norm(inp)

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5)


if __name__ == "__main__":
    assert os.environ.get("TRITON_INTERPRET") == "1", "run through pytest, or with TRITON_INTERPRET=1"
    import warnings

    from ibnorm_llm.norms.triton_ibnorm import ibnorm_triton

    # The interpreter evaluates both sides of every tl.where with numpy, which warns about the
    # side that is thrown away (e.g. log of a masked-out lane).
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    for reading in READINGS:
        _check_reading(reading, {"triton": ibnorm_triton}, rows=7, width=24, num_groups=2)
        print("ok", reading, flush=True)
