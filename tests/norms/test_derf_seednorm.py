"""Derf and SeeDNorm against their papers' formulas, written out directly in float64."""

from __future__ import annotations

import pytest
import torch

from ibnorm_llm.config import ConfigError, load_config
from ibnorm_llm.norms import NORMS, build_norm


def _randomize(norm: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in norm.parameters():
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.5)


def test_both_are_registered():
    assert NORMS["derf"].__name__ == "Derf" and NORMS["seednorm"].__name__ == "SeeDNorm"


@pytest.mark.parametrize("bias", [True, False])
def test_derf_is_gamma_erf_alpha_x_plus_s_plus_beta(bias):
    norm = build_norm("derf", 12, alpha_init=0.7, shift_init=0.1, bias=bias).double()
    _randomize(norm)
    x = torch.randn(3, 5, 12, dtype=torch.float64) * 3
    alpha, shift = norm.alpha.item(), norm.shift.item()
    expected = norm.weight.detach() * torch.special.erf(alpha * x + shift)
    if bias:
        expected = expected + norm.bias.detach()
    torch.testing.assert_close(norm(x), expected, rtol=1e-12, atol=1e-12)


def test_derf_initial_values_and_no_affine():
    norm = build_norm("derf", 8)
    assert (norm.alpha.item(), norm.shift.item()) == (0.5, 0.0)
    bare = build_norm("derf", 8, affine=False).double()
    x = torch.randn(4, 8, dtype=torch.float64)
    torch.testing.assert_close(bare(x), torch.special.erf(0.5 * x))


def test_seednorm_is_dynamic_gain_times_x_over_rms():
    norm = build_norm("seednorm", 12, eps=1e-6).double()
    _randomize(norm)
    x = torch.randn(3, 5, 12, dtype=torch.float64) * 2 + 0.5
    gamma, alpha, beta = (p.detach() for p in (norm.weight, norm.alpha, norm.beta))
    rms = torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6)
    scale = torch.tanh((x * beta).sum(-1, keepdim=True)) * alpha + gamma  # [tanh(x beta^T) alpha + gamma]
    torch.testing.assert_close(norm(x), scale * x / rms, rtol=1e-12, atol=1e-12)


def test_seednorm_starts_as_rmsnorm_and_its_dynamic_part_is_learned():
    x = torch.randn(6, 16)
    fresh, rms = build_norm("seednorm", 16), build_norm("rmsnorm", 16)
    torch.testing.assert_close(fresh(x), rms(x), rtol=1e-6, atol=1e-6)
    fresh(x).pow(3).sum().backward()
    assert fresh.beta.grad.abs().sum() > 0  # the input-conditioned term can move away from 0


def test_seednorm_without_affine_keeps_a_unit_static_gain():
    norm = build_norm("seednorm", 8, affine=False).double()
    assert {name for name, _ in norm.named_parameters()} == {"alpha", "beta"}
    x = torch.randn(4, 8, dtype=torch.float64)
    torch.testing.assert_close(norm(x), build_norm("rmsnorm", 8, affine=False).double()(x))


@pytest.mark.parametrize("kind", ["derf", "seednorm"])
def test_gradcheck_float64_against_every_parameter(kind):
    norm = build_norm(kind, 6).double()
    _randomize(norm, seed=3)
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)

    def f(inp, *_params):
        return norm(inp)

    assert torch.autograd.gradcheck(f, (x, *norm.parameters()), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.norm.shift_init=.nan", "model.norm.shift_init"),
        ("model.norm.alpha_init=0", "model.norm.alpha_init=0.0: must be a finite number > 0"),
    ],
)
def test_bad_derf_options_are_config_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(None, ["model.norm.kind=derf", override])


def test_options_of_one_norm_are_refused_for_the_other():
    with pytest.raises(ConfigError, match="model.norm.shift_init: kind 'seednorm' does not take option"):
        load_config(None, ["model.norm.kind=seednorm", "model.norm.shift_init=0.1"])
