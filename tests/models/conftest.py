"""Tiny fp32 models shared by the model tests."""

from __future__ import annotations

import pytest
import torch

from ibnorm_llm.config import ModelConfig, NormConfig
from ibnorm_llm.models import build_model

VOCAB = 4096
TINY = {"llama": "llama-tiny", "gpt2": "gpt2-tiny"}
BASELINE = {"llama": "rmsnorm", "gpt2": "layernorm"}


def tiny_model(family: str, norm: NormConfig | None = None, seed: int = 0, **model_fields):
    """A tiny model of ``family`` (2 blocks for speed unless overridden), seeded, in eval mode."""
    model_fields.setdefault("n_layers", 2)
    cfg = ModelConfig(preset=TINY[family], norm=norm or NormConfig(kind=BASELINE[family]), **model_fields)
    torch.manual_seed(seed)
    return build_model(cfg, VOCAB).eval()


def perturb_(model: torch.nn.Module, scale: float = 0.05, seed: int = 1) -> None:
    """Move every parameter off its init (norm gains/biases included), reproducibly."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny models are fastest on one thread; on a CPU shared with other jobs, OpenMP threads
    spinning for a busy core can make a tiny forward dozens of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(0))


@pytest.fixture
def make_tiny():
    return tiny_model


@pytest.fixture
def perturb():
    return perturb_
