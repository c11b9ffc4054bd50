"""nGPT (model.architecture=ngpt) in the trainer: the matrices are back on the unit sphere after
every optimizer step, the monitor and the analysis run on a model without norms, and sharded
strategies, which cannot re-normalize a split matrix here, are refused."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import tiny_config

from ibnorm_llm.config import ConfigError, ModelConfig
from ibnorm_llm.models import build_model
from ibnorm_llm.train.monitor import MonitorHooks, Tally
from ibnorm_llm.train.strategies import FSDP2, DeepSpeed
from ibnorm_llm.train.trainer import train

VOCAB = 64


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(preset="llama-tiny", architecture="ngpt", d_model=32, n_layers=2, n_heads=4, d_ff=64)
    return build_model(cfg, VOCAB)


def test_monitor_block_and_attention_statistics_of_a_model_without_norms():
    model = _model().eval()
    model.set_attn_implementation("eager")
    ids = torch.randint(0, VOCAB, (3, 12), generator=torch.Generator().manual_seed(1))
    block = model.model.layers[1]
    seen = {}
    handles = [
        block.register_forward_pre_hook(lambda m, a, k: seen.__setitem__("in", k.get("hidden_states", a[0] if a else None)),
                                        with_kwargs=True),
        block.mlp.register_forward_pre_hook(lambda m, a: seen.__setitem__("mid", a[0])),
        block.register_forward_hook(lambda m, a, o: seen.__setitem__("out", o[0] if isinstance(o, tuple) else o)),
    ]
    tally = Tally()
    with MonitorHooks(model, tally, 3) as hooks, hooks.recording():
        output = model(input_ids=ids, output_attentions=True)
    for handle in handles:
        handle.remove()
    record = tally.record()
    assert not any(key.startswith("monitor/norm/") for key in record)
    x_in, x_mid, x_out = (seen[k].detach().double() for k in ("in", "mid", "out"))
    rms = lambda t: float(t.pow(2).mean().sqrt())  # noqa: E731
    assert record["monitor/block/1/stream_rms"] == pytest.approx(rms(x_out))
    assert record["monitor/block/1/attn_update_ratio"] == pytest.approx(rms(x_mid - x_in) / rms(x_in))
    assert record["monitor/block/1/mlp_update_ratio"] == pytest.approx(rms(x_out - x_mid) / rms(x_mid))
    for index, probs in enumerate(output.attentions):  # nGPT's logits: s_qk * unit q, k, scale sqrt(d_k)
        probs = probs.detach()
        entropy = float(-(probs * probs.clamp_min(1e-30).log()).sum(-1).mean())
        assert record[f"monitor/block/{index}/attn_entropy"] == pytest.approx(entropy, rel=1e-4)


def test_training_keeps_matrices_on_the_sphere_and_monitors_and_analyses(tiny_overrides):
    result = train(tiny_config([
        *tiny_overrides, "run_name=ngpt", "model.architecture=ngpt", "optim.weight_decay=0.0", "train.max_steps=3",
        "monitor.every=1", "analysis.every=3", "analysis.n_tokens=64",
    ]))
    weights = load_file(result.run_dir / "checkpoints" / "final" / "model.safetensors")
    dims = {"o_proj": 0, "down_proj": 0}
    matrices = {name: w for name, w in weights.items() if w.dim() == 2}
    assert len(matrices) == 2 + 2 * 7 and not any("norm" in name for name in weights)
    for name, weight in matrices.items():
        dim = next((d for key, d in dims.items() if key in name), 1)
        assert (weight.double().norm(dim=dim) - 1).abs().max() < 1e-5, name
    alpha = weights["model.layers.0.attn_alpha"]
    assert not torch.all(alpha == alpha[0])  # trained, not the constant init
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    last = next(r for r in reversed(records) if r.get("step") == 3 and "analysis/ib/0" in r)
    for index in range(2):
        for stat in ("attn_update_ratio", "mlp_update_ratio", "attn_entropy", "stream_rms"):
            value = last[f"monitor/block/{index}/{stat}"]
            assert math.isfinite(value), (stat, value)
        assert last[f"monitor/block/{index}/stream_rms"] == pytest.approx(64 ** -0.5, rel=1e-4)  # unit vectors, d_model 64
    assert math.isfinite(last["analysis/ib/1"])
    assert not any(key.startswith("monitor/norm/") for key in last)


@pytest.mark.parametrize("strategy", [
    lambda: FSDP2(None, reshard_after_forward=True, param_dtype=None), lambda: DeepSpeed(None, 3),
], ids=["fsdp2", "deepspeed"])
def test_sharded_strategies_refuse_ngpt(strategy):
    with pytest.raises(ConfigError, match="re-normalizes its weight matrices after every optimizer step"):
        strategy().wrap(_model(), lambda m: torch.optim.AdamW(m.parameters()))
