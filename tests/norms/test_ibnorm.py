"""IBNorm: the formula of ibnorm.md, its limits, its effect on tails, and its options."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ibnorm_llm.norms import IBNorm, compress, ibnorm_reference
from ibnorm_llm.norms.validation import NormOptionError

VARIANTS = ("S", "L", "T")


def _f_scalar(r: float, variant: str, lam: float) -> float:
    """The compression functions of ibnorm.md, written out per scalar."""
    if variant == "S":
        return r if r <= 1 / lam else 1 / lam + (r - 1 / lam) / lam
    if variant == "L":
        return math.log1p(lam * r) / lam
    return math.tanh(lam * r) / lam


def _ibnorm_by_hand(v: list[float], variant, lam, deviation, standardize, order, eps) -> list[float]:
    """One group, plain Python floats: steps 2-5 of ibnorm.md in the order asked for."""

    def mean(a):
        return sum(a) / len(a)

    def std_units(a):
        m = mean(a)
        return [(t - m) / math.sqrt(mean([(s - m) ** 2 for s in a]) + eps) for t in a]

    def standardized(a):
        if standardize == "meanvar":
            return std_units(a)
        return [t / math.sqrt(mean([s * s for s in a]) + eps) for t in a]

    def compressed(a):
        m = mean(a)
        d = std_units(a) if deviation == "std" else [t - m for t in a]
        return [m + math.copysign(_f_scalar(abs(t), variant, lam), t) for t in d]

    if order == "compress_first":
        return standardized(compressed(v))
    return compressed(standardized(v))


def _kurtosis_and_tail(y: torch.Tensor) -> tuple[float, float]:
    z = (y - y.mean()) / y.std()
    return (z.pow(4).mean() - 3).item(), (y.abs() > 3).float().mean().item()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("deviation", ["raw", "std"])
@pytest.mark.parametrize("standardize", ["meanvar", "rms"])
@pytest.mark.parametrize("order", ["compress_first", "standardize_first"])
def test_reference_matches_the_written_formula(variant, deviation, standardize, order):
    torch.manual_seed(1)
    x = torch.randn(3, 12, dtype=torch.float64) * 2 + 0.5
    lam, eps = 2.5, 1e-5
    got = ibnorm_reference(
        x, None, None, variant=variant, lam=lam, deviation=deviation, standardize=standardize,
        order=order, num_groups=1, eps=eps,
    )
    want = torch.tensor([_ibnorm_by_hand(row.tolist(), variant, lam, deviation, standardize, order, eps) for row in x], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_compression_function_properties(variant):
    lam = 4.0
    # Up to r = 3: beyond it tanh's slope underflows to 0 even in float64.
    r = torch.linspace(0, 3, 601, dtype=torch.float64, requires_grad=True)
    f = compress(r, variant, lam)
    (slope,) = torch.autograd.grad(f.sum(), r)
    assert f[0] == 0
    assert (f[1:] <= r[1:]).all(), "compression never moves a value away from the mean"
    assert (slope > 0).all() and (slope <= 1 + 1e-12).all()
    assert slope[0] == 1.0  # f'(0) = 1, also through autograd at d = 0 exactly
    d = torch.tensor([-2.0, -0.1, 0.0, 0.1, 2.0], dtype=torch.float64)
    torch.testing.assert_close(compress(d, variant, lam), -compress(-d, variant, lam))  # odd


def test_tanh_variant_saturates_at_one_over_lambda():
    assert compress(torch.tensor(1e3), "T", 4.0).item() == pytest.approx(0.25)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("deviation", ["raw", "std"])
def test_lighter_tails_than_layernorm_on_student_t(variant, deviation):
    torch.manual_seed(0)
    x = torch.distributions.StudentT(3.0).sample((512, 64))
    layer = F.layer_norm(x, (64,))
    ours = IBNorm(64, variant=variant, lam=4.0, deviation=deviation)(x).detach()
    kurt_ln, tail_ln = _kurtosis_and_tail(layer)
    kurt_ib, tail_ib = _kurtosis_and_tail(ours)
    assert kurt_ib < kurt_ln - 0.5
    assert tail_ib < tail_ln
    assert (ours - layer).abs().max() > 0.1  # not LayerNorm in disguise


@pytest.mark.parametrize("deviation, atol", [("raw", 1e-6), ("std", 5e-5)])
def test_s_at_lambda_one_is_layernorm(deviation, atol):
    # std units divide by sqrt(var + eps) once before the standardization does it again: eps counts twice.
    x = torch.distributions.StudentT(3.0).sample((32, 24))
    norm = IBNorm(24, variant="S", lam=1.0, deviation=deviation, lam_role="rate")
    torch.testing.assert_close(norm(x), F.layer_norm(x, (24,)), rtol=0, atol=atol)


@pytest.mark.parametrize("variant", ["L", "T"])
def test_l_and_t_tend_to_layernorm_as_lambda_vanishes(variant):
    torch.manual_seed(0)
    x = torch.randn(32, 24) * 2
    layer = F.layer_norm(x, (24,))
    gaps = [(IBNorm(24, variant=variant, lam=lam)(x) - layer).abs().max().item() for lam in (1.0, 1e-2, 1e-4)]
    assert gaps[0] > 0.5
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-3  # L's gap shrinks like lambda, T's like lambda^2


def test_num_groups_standardizes_each_group():
    x = torch.randn(10, 32) * torch.linspace(0.5, 8, 32)
    y = IBNorm(32, num_groups=4)(x).detach().reshape(10, 4, 8)
    torch.testing.assert_close(y.mean(-1), torch.zeros(10, 4), rtol=0, atol=1e-5)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(10, 4), rtol=0, atol=1e-3)
    whole = IBNorm(32, num_groups=1)(x).detach().reshape(10, 4, 8)
    assert (whole - y).abs().max() > 0.1


def test_num_groups_must_divide_width():
    with pytest.raises(NormOptionError, match=r"num_groups=3: must divide the feature width 32"):
        IBNorm(32, num_groups=3)


def test_learnable_lambda_gets_gradient_and_stays_positive():
    norm = IBNorm(16, variant="L", lam=4.0, learnable_lam=True)
    assert norm.lam_value.item() == pytest.approx(4.0, rel=1e-6)
    x = torch.distributions.StudentT(3.0).sample((8, 16))
    norm(x).pow(3).sum().backward()
    assert norm.lam_raw.grad is not None and norm.lam_raw.grad.abs() > 0
    with torch.no_grad():
        norm.lam_raw.fill_(-40.0)  # far past any optimizer step
    assert norm.lam_value.item() > 0
    assert torch.isfinite(norm(x)).all()


def test_learnable_lambda_keeps_s_at_least_one():
    norm = IBNorm(16, variant="S", lam=3.0, learnable_lam=True)
    assert norm.lam_value.item() == pytest.approx(3.0, rel=1e-6)
    with torch.no_grad():
        norm.lam_raw.fill_(-40.0)
    assert norm.lam_value.item() >= 1.0
    norm.reset_parameters()
    assert norm.lam_value.item() == pytest.approx(3.0, rel=1e-6)


def test_affine_is_applied_last():
    x = torch.randn(4, 8)
    norm = IBNorm(8)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 9.0))
        norm.bias.fill_(0.5)
    plain = IBNorm(8, affine=False)(x)
    torch.testing.assert_close(norm(x), plain * torch.arange(1.0, 9.0) + 0.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lam": 0.0}, r"lam=0.0: must be a finite number > 0"),
        ({"lam": -1.0}, r"lam=-1.0: must be a finite number > 0"),
        ({"lam": float("nan")}, r"lam=nan: must be a finite number"),
        ({"lam": float("inf")}, r"lam=inf: must be a finite number"),
        ({"variant": "S", "lam": 0.5}, r"lam=0.5: must be a finite number >= 1 for variant S"),
        ({"variant": "X"}, r"variant='X': must be one of S, L, T"),
        ({"deviation": "mad"}, r"deviation='mad': must be one of raw, std"),
        ({"standardize": "none"}, r"standardize='none': must be one of meanvar, rms"),
        ({"order": "after"}, r"order='after': must be one of compress_first, standardize_first"),
        ({"impl": "cuda"}, r"impl='cuda': must be one of auto, reference, fused, triton"),
        ({"eps": 0.0}, r"eps=0.0: must be a finite number > 0"),
        ({"num_groups": 0}, r"num_groups=0: must be a positive integer"),
        ({"affine": "yes"}, r"affine='yes': must be true or false"),
    ],
)
def test_invalid_options_name_the_option_and_allowed_values(options, message):
    with pytest.raises(ValueError, match=message):
        IBNorm(16, **options)


def test_reference_impl_is_the_reference_function():
    x = torch.randn(5, 16)
    norm = IBNorm(16, variant="T", lam=3.0, deviation="raw", impl="reference")
    want = ibnorm_reference(
        x, norm.weight, norm.bias, variant="T", lam=3.0, deviation="raw", standardize="meanvar",
        order="compress_first", num_groups=1, eps=1e-5,
    )
    torch.testing.assert_close(norm(x), want, rtol=0, atol=0)
    torch.testing.assert_close(IBNorm(16, variant="T", lam=3.0, deviation="raw", impl="auto")(x), want)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"deviation": "std", "num_groups": 2},
        {"standardize": "rms", "order": "standardize_first"},
        {"learnable_lam": True, "lam": 2.0},
    ],
    ids=["default", "std-groups", "rms-standardize_first", "learnable"],
)
def test_gradcheck_float64_across_options(variant, options):
    torch.manual_seed(0)
    norm = IBNorm(8, variant=variant, **options).double()
    with torch.no_grad():
        norm.weight.add_(torch.randn_like(norm.weight) * 0.3)
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    params = tuple(norm.parameters())

    def f(inp, *_):
        return norm(inp)

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5)
