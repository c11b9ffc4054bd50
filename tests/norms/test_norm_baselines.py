"""The baselines against their definitions: LayerNorm, RMSNorm (torch and HF), DyT, NormalNorm."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from ibnorm_llm.norms import DyT, LayerNorm, NormalNorm, RMSNorm
from ibnorm_llm.norms.normalnorm import POWER_MAX, POWER_MIN, estimate_power, yeo_johnson


def _random_affine(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p))


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_equals_f_layer_norm_and_loads_torch_weights(bias):
    x = torch.randn(4, 6, 32) * 3 + 1
    ours = LayerNorm(32, eps=1e-5, bias=bias)
    _random_affine(ours)
    torch.testing.assert_close(ours(x), F.layer_norm(x, (32,), ours.weight, ours.bias, 1e-5), rtol=0, atol=0)
    stock = nn.LayerNorm(32, eps=1e-5, bias=bias)
    stock.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), stock(x), rtol=0, atol=0)


def test_layernorm_without_affine():
    x = torch.randn(5, 16)
    torch.testing.assert_close(LayerNorm(16, affine=False)(x), F.layer_norm(x, (16,)), rtol=0, atol=0)


def test_rmsnorm_equals_torch_and_hf_llama_rmsnorm():
    x = torch.randn(4, 6, 32) * 3
    ours = RMSNorm(32, eps=1e-6)
    _random_affine(ours)
    stock = nn.RMSNorm(32, eps=1e-6)
    stock.load_state_dict(ours.state_dict())
    hf = LlamaRMSNorm(32, eps=1e-6)
    hf.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), stock(x), rtol=1e-6, atol=1e-6)
    # fp32 on CPU runs the fused kernel, which sums the squares in another order.
    torch.testing.assert_close(ours(x), hf(x), rtol=1e-6, atol=1e-6)


def test_rmsnorm_bf16_matches_hf_rounding():
    x = torch.randn(4, 32).to(torch.bfloat16)
    ours = RMSNorm(32).to(torch.bfloat16)
    _random_affine(ours)
    hf = LlamaRMSNorm(32, eps=1e-6).to(torch.bfloat16)
    hf.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), hf(x), rtol=0, atol=0)


def test_dyt_formula():
    x = torch.randn(3, 16) * 4
    norm = DyT(16, alpha_init=0.7)
    assert norm.alpha.item() == pytest.approx(0.7)
    _random_affine(norm)
    torch.testing.assert_close(norm(x), norm.weight * torch.tanh(norm.alpha * x) + norm.bias)


def test_dyt_alpha_is_learned():
    norm = DyT(8)
    norm(torch.randn(4, 8)).pow(2).sum().backward()
    assert norm.alpha.grad is not None and norm.alpha.grad.abs() > 0


def test_yeo_johnson_matches_its_definition():
    z = torch.tensor([-3.0, -0.5, 0.0, 0.5, 3.0], dtype=torch.float64)
    p = 0.6
    want = torch.tensor(
        [-(((1 - v) ** (2 - p) - 1) / (2 - p)) if v < 0 else ((v + 1) ** p - 1) / p for v in z.tolist()],
        dtype=torch.float64,
    )
    torch.testing.assert_close(yeo_johnson(z, torch.tensor(p, dtype=torch.float64)), want)
    torch.testing.assert_close(yeo_johnson(z, torch.tensor(1.0, dtype=torch.float64)), z)  # power 1 = identity


def test_power_estimate_is_one_for_symmetric_data_and_corrects_skew():
    torch.manual_seed(0)
    gaussian = torch.randn(8, 4096)
    assert (estimate_power(gaussian) - 1).abs().max() < 0.1
    right_skewed = torch.distributions.Exponential(1.0).sample((8, 4096))
    right_skewed = (right_skewed - right_skewed.mean(-1, keepdim=True)) / right_skewed.std(-1, keepdim=True)
    power = estimate_power(right_skewed)
    assert (power < 0.9).all() and (power >= POWER_MIN).all() and (power <= POWER_MAX).all()


def _skewness(y: torch.Tensor) -> torch.Tensor:
    z = (y - y.mean(-1, keepdim=True)) / y.std(-1, unbiased=False, keepdim=True)
    return z.pow(3).mean(-1)


def test_normalnorm_makes_groups_more_gaussian():
    torch.manual_seed(0)
    x = torch.distributions.Exponential(1.0).sample((16, 256))
    y = NormalNorm(256).eval()(x)
    assert _skewness(y).abs().mean() < 0.5 * _skewness(x).abs().mean()


def test_normalnorm_noise_only_in_training():
    torch.manual_seed(0)
    x = torch.randn(16, 64)
    norm = NormalNorm(64, noise_std=0.4)
    torch.testing.assert_close(norm.eval()(x), norm.eval()(x), rtol=0, atol=0)
    clean = norm.eval()(x)
    noisy = norm.train()(x)
    noise = noisy - clean
    assert noise.std().item() == pytest.approx(0.4, rel=0.1)
    torch.testing.assert_close(NormalNorm(64, noise_std=0.0).train()(x), clean, rtol=0, atol=0)


def test_normalnorm_groups():
    x = torch.randn(6, 32) * torch.linspace(0.5, 8, 32)
    y = NormalNorm(32, num_groups=4).eval()(x).reshape(6, 4, 8)
    torch.testing.assert_close(y.mean(-1), torch.zeros(6, 4), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="num_groups=5"):
        NormalNorm(32, num_groups=5)
