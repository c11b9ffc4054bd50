"""The baselines against their definitions: LayerNorm, RMSNorm (torch and HF), DyT (NormalNorm: test_normalnorm.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from ibnorm_llm.norms import DyT, LayerNorm, RMSNorm


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
