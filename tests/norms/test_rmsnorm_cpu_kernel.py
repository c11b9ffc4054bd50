"""RMSNorm's fp32 CPU path (the CPU kernel operator) equals HF's LlamaRMSNorm, forward and backward."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from ibnorm_llm.norms import RMSNorm, cpu_ops

pytestmark = pytest.mark.skipif(cpu_ops.load() is not None, reason="the CPU kernel does not build here")


@pytest.mark.parametrize("with_weight", [True, False])
def test_fused_rmsnorm_equals_hf_llama_rmsnorm(with_weight):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, 96, generator=gen) * 3
    hf = LlamaRMSNorm(96, eps=1e-6)
    with torch.no_grad():
        hf.weight.copy_(1 + 0.3 * torch.randn(96, generator=gen) if with_weight else torch.ones(96))
    grad_out = torch.randn(x.shape, generator=gen)

    xh = x.clone().requires_grad_()
    hf(xh).backward(grad_out)
    xf = x.clone().requires_grad_()
    weight = hf.weight.detach().clone().requires_grad_() if with_weight else None
    y = cpu_ops.rmsnorm_cpu(xf, weight, 1e-6)
    y.backward(grad_out)

    torch.testing.assert_close(y, hf(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(xf.grad, xh.grad, rtol=1e-5, atol=1e-5)
    if with_weight:
        torch.testing.assert_close(weight.grad, hf.weight.grad, rtol=1e-5, atol=1e-5)


class _OpCalls(TorchDispatchMode):
    def __init__(self, names: list[str]):
        super().__init__()
        self.names = names

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def test_rmsnorm_module_takes_the_kernel_on_fp32_and_saves_less():
    norm = RMSNorm(64)
    x = torch.randn(32, 64, requires_grad=True)
    saved = 0
    ops = []

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), _OpCalls(ops):
        norm(x)
    assert "ibnorm_llm.ibnorm_forward" in ops
    ops.clear()
    with _OpCalls(ops):
        norm.bfloat16()(x.bfloat16())  # bf16 keeps HF's rounding: the formula
    assert "ibnorm_llm.ibnorm_forward" not in ops
    layer_norm_saved = x.numel() * 4 + 2 * 32 * 4 + 2 * 64 * 4  # x, mean, rstd, weight, bias
    assert saved <= 1.5 * layer_norm_saved
