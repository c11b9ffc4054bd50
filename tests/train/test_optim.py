import math

import pytest
import torch
from torch import nn

from ibnorm_llm.config import OptimConfig
from ibnorm_llm.train.optim import build_optimizer, decay_split, lr_at, set_lr


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied, as in GPT-2


def test_decay_only_on_matrices_not_norms_biases_or_embeddings():
    decay, no_decay = decay_split(TinyLM())
    assert decay == ["proj.weight"]
    assert set(no_decay) == {"embed.weight", "proj.bias", "norm.weight", "norm.bias"}


def test_optimizer_groups_and_class():
    model = TinyLM()
    opt = build_optimizer(model, OptimConfig(name="adamw", weight_decay=0.1))
    assert isinstance(opt, torch.optim.AdamW)
    decays = {g["weight_decay"]: len(g["params"]) for g in opt.param_groups}
    assert decays == {0.1: 1, 0.0: 4}
    # the tied weight appears exactly once
    all_params = [p for g in opt.param_groups for p in g["params"]]
    assert len(all_params) == len({id(p) for p in all_params}) == 5
    assert type(build_optimizer(model, OptimConfig(name="adam", weight_decay=0.0))) is torch.optim.Adam


def test_warmup_then_cosine_to_min_ratio():
    cfg = OptimConfig(lr=1e-3, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(0, cfg, 110) == pytest.approx(1e-4)
    assert lr_at(9, cfg, 110) == pytest.approx(1e-3)
    assert lr_at(10, cfg, 110) == pytest.approx(1e-3)
    assert lr_at(60, cfg, 110) == pytest.approx(1e-4 + 0.5 * 9e-4)  # halfway through the cosine
    assert lr_at(110, cfg, 110) == pytest.approx(1e-4)
    assert lr_at(500, cfg, 110) == pytest.approx(1e-4)  # stays at the floor past max_steps
    lrs = [lr_at(s, cfg, 110) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs[:-1], lrs[1:], strict=True))


def test_linear_and_constant_schedules():
    linear = OptimConfig(lr=1.0, warmup_steps=0, schedule="linear", min_lr_ratio=0.0)
    assert [lr_at(s, linear, 4) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    constant = OptimConfig(lr=0.5, warmup_steps=2, schedule="constant")
    assert [lr_at(s, constant, 10) for s in range(4)] == [0.25, 0.5, 0.5, 0.5]


def test_set_lr_sets_every_group():
    opt = build_optimizer(TinyLM(), OptimConfig())
    set_lr(opt, 0.123)
    assert all(math.isclose(g["lr"], 0.123) for g in opt.param_groups)
