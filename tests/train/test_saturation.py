"""The saturated share (elements past a bounded norm's knee) against hand computations, and the
warning a run logs when a layer is driven into saturation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from train_helpers import tiny_config

from ibnorm_llm.norms import build_norm
from ibnorm_llm.norms.saturation import saturated_share
from ibnorm_llm.train.metrics import read_metrics
from ibnorm_llm.train.saturation_watch import binarizing_warnings, saturation_record, saturation_watch
from ibnorm_llm.train.trainer import train

# Two tokens of width 4: the first has deviations (0, 0, 1, -1) from its mean 0, the second (.1, -.1, .2, -.2).
X = torch.tensor([[0.0, 0.0, 1.0, -1.0], [0.1, -0.1, 0.2, -0.2]])


def test_ibnorm_t_rate_share_by_hand():
    # tanh's slope 1 - tanh(4 r)^2 is below 0.1 where 4 r > atanh(sqrt(0.9)) = 1.818: only the two r = 1 elements.
    assert math.atanh(math.sqrt(0.9)) == pytest.approx(1.818, abs=1e-3)
    norm = build_norm("ibnorm", 4, variant="T", lam=4.0, deviation="raw", impl="reference")
    assert saturated_share(norm, X) == pytest.approx(2 / 8)


def test_ibnorm_l_and_s_rate_share_by_hand():
    # L: slope 1 / (1 + lam r) < 0.1 where lam r > 9. At lam 12: r = 1 (12 > 9) only.
    norm = build_norm("ibnorm", 4, variant="L", lam=12.0, deviation="raw", impl="reference")
    assert saturated_share(norm, X) == pytest.approx(2 / 8)
    # S: slope 1/lam past the knee 1/lam; at lam 20 (slope 0.05) every r > 0.05, i.e. 6 of 8 elements.
    norm = build_norm("ibnorm", 4, variant="S", lam=20.0, deviation="raw", impl="reference")
    assert saturated_share(norm, X) == pytest.approx(6 / 8)
    # At lam 4 S's slope past the knee is 0.25: never below 0.1, whatever the input.
    norm = build_norm("ibnorm", 4, variant="S", lam=4.0, deviation="raw", impl="reference")
    assert saturated_share(norm, 100 * X) == 0.0


def test_std_units_share_is_scale_free_and_by_hand():
    # std units: each token's deviations divided by its rms deviation: token 1 -> (0, 0, 1.414, -1.414),
    # token 2 -> (.632, -.632, 1.265, -1.265). T at lam 2: 2 r > 1.818 for r > 0.909: 2 + 2 elements.
    norm = build_norm("ibnorm", 4, variant="T", lam=2.0, deviation="std", eps=1e-12, impl="reference")
    assert saturated_share(norm, X) == pytest.approx(4 / 8)
    assert saturated_share(norm, 1e3 * X) == pytest.approx(4 / 8)


def test_dyt_and_derf_share_by_hand_and_none_for_unbounded_norms():
    dyt = build_norm("dyt", 4, alpha_init=0.5)  # |0.5 x| > 1.818 for |x| > 3.64
    assert saturated_share(dyt, torch.tensor([[0.0, 1.0, 4.0, -5.0]])) == pytest.approx(0.5)
    derf = build_norm("derf", 4, alpha_init=0.5)  # exp(-(0.5 x)^2) < 0.1 for |0.5 x| > 1.517
    assert saturated_share(derf, torch.tensor([[0.0, 3.0, 3.1, -4.0]])) == pytest.approx(0.5)
    assert saturated_share(build_norm("layernorm", 4), X) is None
    assert saturated_share(build_norm("rmsnorm", 4), X) is None


def test_watch_counts_only_inside_and_warns_on_a_saturated_layer():
    model = nn.Sequential(build_norm("ibnorm", 4, variant="T", lam=4.0, impl="reference"),
                          build_norm("rmsnorm", 4))
    with saturation_watch(model) as counts:
        model(100 * X)  # every nonzero deviation is far past tanh's knee: 6 of 8 elements
    model(X)  # outside the block: not counted, no hook left
    assert all(not m._forward_pre_hooks for m in model.modules())
    record = saturation_record(counts, reduce=lambda t: t)
    assert record == {"saturated/0": pytest.approx(6 / 8)}
    assert binarizing_warnings(record, step=7) == []
    record = {"saturated/0": 0.95}
    [warning] = binarizing_warnings(record, step=7)
    assert "step 7" in warning and "0 has 95% of its input past the knee" in warning


def test_a_run_logs_saturation_and_warns_when_a_layer_binarizes(tiny_overrides, capsys):
    # lam 2000 on raw deviations of a freshly initialized stream (size ~0.02-1): nearly every element saturates.
    cfg = tiny_config([*tiny_overrides, "run_name=binarizes", "train.max_steps=2", "train.eval_every=2",
                       "model.norm.kind=ibnorm", "model.norm.variant=T", "model.norm.lam=2000",
                       "model.norm.deviation=raw"])
    result = train(cfg)
    last = read_metrics(result.run_dir / "metrics.jsonl")[-1]
    shares = {k: v for k, v in last.items() if k.startswith("saturated/")}
    assert set(shares) == {f"saturated/model.layers.{i}.{n}" for i in (0, 1)
                           for n in ("input_layernorm", "post_attention_layernorm")} | {"saturated/model.norm"}
    assert min(shares.values()) > 0.9
    err = capsys.readouterr().err
    assert "model.layers.0.input_layernorm has" in err and "past the knee" in err
