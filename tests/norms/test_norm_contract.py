"""The contract every registered norm keeps (parametrized over every key of NORMS)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ibnorm_llm.norms import NORMS, build_norm
from ibnorm_llm.norms import normalnorm as normalnorm_module

DIM = 16
# NormalNorm ends in a standardization only under its non-default second_standardize.
MEANVAR_NORMS = {"layernorm": {}, "ibnorm": {}, "normalnorm": {"second_standardize": True}}


def _build(kind: str, dim: int = DIM, **options) -> nn.Module:
    torch.manual_seed(0)
    # NormalNorm adds noise in training; the contract is checked on the deterministic map.
    return build_norm(kind, dim, **options).eval()


def _perturb(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)


@pytest.mark.parametrize("kind", NORMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shape_and_dtype_preserved(kind, dtype):
    x = torch.randn(2, 5, DIM).to(dtype)
    y = _build(kind)(x)
    assert y.shape == x.shape
    assert y.dtype == dtype


@pytest.mark.parametrize("kind", NORMS)
def test_bf16_statistics_are_fp32(kind):
    """A bf16 input gives the fp32 result on the upcast input, rounded once to bf16."""
    norm = _build(kind)
    _perturb(norm)
    x = (torch.randn(4, 7, DIM) * 3 + 1).to(torch.bfloat16)
    got = norm(x)
    want = norm(x.float()).to(torch.bfloat16)
    # One bf16 rounding of the output: at most one ulp apart (bf16 has 8 significant bits).
    torch.testing.assert_close(got.float(), want.float(), rtol=2**-7, atol=1e-2)


@pytest.mark.parametrize("kind", NORMS)
def test_gradients_are_finite(kind):
    norm = build_norm(kind, DIM).train()
    x = (torch.randn(3, 4, DIM) * 5).requires_grad_()
    norm(x).pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in norm.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("kind", NORMS)
def test_reset_parameters_restores_init_and_is_idempotent(kind):
    fresh = build_norm(kind, DIM)
    norm = build_norm(kind, DIM)
    _perturb(norm)
    norm.reset_parameters()
    once = {k: v.clone() for k, v in norm.state_dict().items()}
    norm.reset_parameters()
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(once[key], value, rtol=0, atol=0)
        torch.testing.assert_close(norm.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("kind", NORMS)
def test_parameters_are_named_weight_and_bias(kind):
    names = {name for name, _ in build_norm(kind, DIM).named_parameters()}
    assert "weight" in names
    assert names <= {"weight", "bias", "alpha", "lam_raw", "shift", "beta"}
    no_affine = {name for name, _ in build_norm(kind, DIM, affine=False).named_parameters()}
    assert not no_affine & {"weight", "bias"}


@pytest.mark.parametrize("kind", MEANVAR_NORMS)
def test_meanvar_output_is_standardized_at_init(kind):
    x = torch.randn(64, DIM) * 4 + 2
    y = _build(kind, **MEANVAR_NORMS[kind])(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(64), rtol=0, atol=1e-5)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(64), rtol=0, atol=1e-3)


@pytest.mark.parametrize("kind", [*NORMS, "normalnorm-clamped"])
def test_gradcheck_float64(kind, monkeypatch):
    options = {}
    if kind == "normalnorm-clamped":
        # The old power estimate is detached by design; hold it fixed so finite differences see the same
        # function autograd differentiates. The default (official) estimate is differentiated through.
        kind, options = "normalnorm", {"lmbda_estimate": "clamped_finite_difference"}
        fixed = torch.full((3, 1, 1), 0.8, dtype=torch.float64)
        monkeypatch.setattr(normalnorm_module, "finite_difference_lmbda", lambda z: fixed)
    norm = _build(kind, 8, **options).double()
    _perturb(norm)
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    params = tuple(norm.parameters())

    def f(inp, *_):
        return norm(inp)

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("kind", NORMS)
def test_extra_repr_shows_options(kind):
    text = repr(build_norm(kind, DIM))
    assert str(DIM) in text and "affine=True" in text
