"""The monitor's hooks on real models, and monitored training runs (monitor.every, optim.z_loss).

Hook statistics are checked against values computed independently from the same forward: the
eager attention's own probabilities (so the recomputed logits, RoPE and grouped heads included,
are the model's), and the tensors a norm and a block really saw.
"""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import ROOT, overrides_for, tiny_config

from ibnorm_llm.config import ConfigError, ModelConfig
from ibnorm_llm.models import build_model
from ibnorm_llm.norms import NormSpec
from ibnorm_llm.train.monitor import MonitorHooks, Tally, hook_count
from ibnorm_llm.train.trainer import train

VOCAB = 64


def _model(**overrides) -> torch.nn.Module:
    settings = {"preset": "llama-tiny", "d_model": 32, "n_layers": 2, "n_heads": 4, "d_ff": 64, **overrides}
    torch.manual_seed(0)
    return build_model(ModelConfig(**settings), VOCAB)


def _batch(rows: int = 3, length: int = 12) -> torch.Tensor:
    return torch.randint(0, VOCAB, (rows, length), generator=torch.Generator().manual_seed(1))


def _record(model, ids, sequences=3, **kwargs):
    tally = Tally()
    with MonitorHooks(model, tally, sequences) as hooks, hooks.recording():
        output = model(input_ids=ids, **kwargs)
    return tally.record(), output


def _entropy(probs: torch.Tensor) -> float:
    """Mean over sequences, heads and queries of the entropy of each attention row."""
    probs = probs.detach()
    return float(-(probs * probs.clamp_min(1e-30).log()).sum(-1).mean())


@pytest.mark.parametrize("overrides", [
    {"n_kv_heads": 2},                                              # LLaMA, grouped-query attention, RoPE
    {"n_kv_heads": 2, "qk_norm": NormSpec("rmsnorm")},              # queries and keys normalized per head
    {"preset": "gpt2-tiny", "d_model": 32, "n_heads": 4},           # GPT-2: fused projection, no RoPE
    {"n_kv_heads": 2, "norm_placement": "hybrid"},                  # HybridNorm: queries, keys, values normalized
], ids=["llama_gqa", "llama_qk_norm", "gpt2", "llama_hybrid"])
def test_attention_statistics_match_the_eager_attention(overrides):
    model = _model(**overrides).eval()
    model.set_attn_implementation("eager")
    ids = _batch()
    record, output = _record(model, ids, output_attentions=True)
    for index, probs in enumerate(output.attentions):
        # the entropy of the recomputed softmax is the model's: the max logit comes from the same logits
        assert record[f"monitor/block/{index}/attn_entropy"] == pytest.approx(_entropy(probs), rel=1e-4)


def test_norm_and_block_statistics_are_those_of_the_tensors_the_model_saw():
    model = _model().eval()
    seen = {}
    block = model.model.layers[1]
    handles = [
        block.register_forward_pre_hook(lambda m, a, k: seen.__setitem__("in", k.get("hidden_states", a[0] if a else None)),
                                        with_kwargs=True),
        block.post_attention_layernorm.register_forward_pre_hook(lambda m, a: seen.__setitem__("mid", a[0])),
        block.register_forward_hook(lambda m, a, o: seen.__setitem__("out", o[0] if isinstance(o, tuple) else o)),
    ]
    record, _ = _record(model, _batch())
    for handle in handles:
        handle.remove()
    x_in, x_mid, x_out = (seen[k].detach().double() for k in ("in", "mid", "out"))
    rms = lambda t: float(t.pow(2).mean().sqrt())  # noqa: E731
    prefix = "monitor/norm/model.layers.1.post_attention_layernorm"
    assert record[f"{prefix}/in_rms"] == pytest.approx(rms(x_mid))
    assert record[f"{prefix}/in_max"] == pytest.approx(float(x_mid.abs().max()))
    centred = x_mid - x_mid.mean()
    kurtosis = float((centred**4).mean() / centred.pow(2).mean() ** 2 - 3)
    assert record[f"{prefix}/in_kurtosis"] == pytest.approx(kurtosis)
    assert record[f"{prefix}/out_rms"] == pytest.approx(1.0, abs=0.05)  # RMSNorm with unit gains
    assert record[f"{prefix}/eps_dominated"] == 0.0 and f"{prefix}/saturated" not in record
    assert record["monitor/block/1/stream_rms"] == pytest.approx(rms(x_out))
    assert record["monitor/block/1/attn_update_ratio"] == pytest.approx(rms(x_mid - x_in) / rms(x_in))
    assert record["monitor/block/1/mlp_update_ratio"] == pytest.approx(rms(x_out - x_mid) / rms(x_mid))
    flat = x_out.abs().flatten().float()
    assert record["monitor/block/1/massive"] == pytest.approx(float(flat.max() / flat.median()), rel=1e-5)


@pytest.mark.parametrize("placement", ["pre", "post", "peri"])
@pytest.mark.parametrize("norm", ["ibnorm", "dyt", "derf", "layernorm"])
def test_every_norm_of_every_placement_is_measured(placement, norm):
    spec = NormSpec(norm, variant="T") if norm == "ibnorm" else NormSpec(norm)
    model = _model(norm=spec, norm_placement=placement, qk_norm=NormSpec("rmsnorm"))
    record, _ = _record(model, _batch())
    names = {key.split("/")[2] for key in record if key.startswith("monitor/norm/")}
    expected = {f"model.layers.{i}.{n}" for i in range(2) for n in ("input_layernorm", "post_attention_layernorm",
                                                                     "self_attn.q_norm", "self_attn.k_norm")}
    if placement == "peri":
        expected |= {f"model.layers.{i}.{n}" for i in range(2) for n in ("attn_output_layernorm", "mlp_output_layernorm")}
    assert names == expected | {"model.norm"}
    block_norm = "monitor/norm/model.layers.0.input_layernorm"
    assert (f"{block_norm}/saturated" in record) == (norm != "layernorm")  # bounded norms only
    assert (f"{block_norm}/eps_dominated" in record) == (norm in ("ibnorm", "layernorm"))  # norms with an eps
    for index in range(2):
        for stat in ("attn_update_ratio", "mlp_update_ratio", "attn_entropy", "stream_rms", "massive"):
            value = record[f"monitor/block/{index}/{stat}"]
            assert value is not None and math.isfinite(value), (stat, value)


@pytest.mark.parametrize("placement", ["hybrid_star", "deepnorm"])
def test_every_norm_of_hybridnorm_and_deepnorm_is_measured(placement):
    model = _model(norm=NormSpec("ibnorm", variant="T"), norm_placement=placement)
    record, _ = _record(model, _batch())
    names = {key.split("/")[2] for key in record if key.startswith("monitor/norm/")}
    expected = {f"model.layers.{i}.post_attention_layernorm" for i in range(2)} | {"model.norm"}
    if placement == "hybrid_star":  # the attention input norm only in the first (Pre-LN) block
        expected |= {"model.layers.0.input_layernorm"}
        expected |= {f"model.layers.{i}.self_attn.{n}" for i in range(2) for n in ("q_norm", "k_norm", "v_norm")}
    else:
        expected |= {f"model.layers.{i}.input_layernorm" for i in range(2)}
    assert names == expected
    for index in range(2):
        for stat in ("attn_update_ratio", "mlp_update_ratio", "attn_entropy", "stream_rms", "massive"):
            value = record[f"monitor/block/{index}/{stat}"]
            assert value is not None and math.isfinite(value), (stat, value)


def test_hooks_exist_only_inside_the_monitor_step_and_record_only_when_asked():
    model = _model(qk_norm=NormSpec("rmsnorm"))
    before = hook_count(model)  # the query/key norm's own projection hooks
    assert before > 0
    tally = Tally()
    with MonitorHooks(model, tally, 1) as hooks:
        assert hook_count(model) > before
        model(input_ids=_batch())  # outside recording(): nothing measured
        assert len(tally) == 0
        with hooks.recording(attention=False):
            model(input_ids=_batch())
    assert hook_count(model) == before
    assert len(tally) > 0 and not any("attn_entropy" in key for key in tally.record())


# --- training runs ------------------------------------------------------------------------------

DOCUMENTED = (
    "monitor/norm/model.layers.0.input_layernorm/in_rms", "monitor/norm/model.layers.0.input_layernorm/in_max",
    "monitor/norm/model.layers.0.input_layernorm/in_kurtosis", "monitor/norm/model.layers.0.input_layernorm/out_kurtosis",
    "monitor/norm/model.layers.0.input_layernorm/mean_share", "monitor/norm/model.layers.0.input_layernorm/eps_dominated",
    "monitor/norm/model.layers.0.input_layernorm/saturated", "monitor/norm/model.layers.0.input_layernorm/gain_mean",
    "monitor/norm/model.layers.0.input_layernorm/gain_rms", "monitor/norm/model.layers.0.input_layernorm/gain_max",
    "monitor/norm/model.layers.1.self_attn.q_norm/in_rms", "monitor/norm/model.norm/in_rms",
    "monitor/block/1/stream_rms", "monitor/block/1/stream_max", "monitor/block/1/attn_update_ratio",
    "monitor/block/1/mlp_update_ratio", "monitor/block/1/attn_entropy", "monitor/block/1/attn_logit_max",
    "monitor/block/1/massive", "monitor/param/block_1/grad_norm", "monitor/param/block_1/update_ratio",
    "monitor/param/embed/update_ratio", "monitor/param/head/grad_norm", "monitor/output/max_logit",
    "monitor/output/z_loss", "spike_skipped_steps",
)


@pytest.fixture(scope="module")
def base(tmp_path_factory, data_files):
    out = tmp_path_factory.mktemp("monitor_runs")
    return [*overrides_for(out, data_files), "train.max_steps=4", "train.log_every=4",
            "model.norm={kind: ibnorm, variant: T, lam: 4.0}", "model.qk_norm={kind: rmsnorm}"]


@pytest.fixture(scope="module")
def runs(base):
    return {name: train(tiny_config([*base, f"run_name={name}", *extra])).run_dir
            for name, extra in {"plain": [], "monitored": ["monitor.every=2"]}.items()}


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_monitored_run_logs_the_documented_keys_on_monitor_steps(runs):
    records = {r["step"]: r for r in _records(runs["monitored"])}
    assert sorted(records) == [2, 4]  # step 2 is written for the monitor although log_every is 4
    for step in (2, 4):
        missing = [key for key in DOCUMENTED if key not in records[step]]
        assert not missing, missing
    assert records[2]["monitor/output/z_loss"] == pytest.approx(math.log(512) ** 2, rel=0.2)  # near-uniform logits
    assert not any(key.startswith("monitor/") for key in _records(runs["plain"])[0])


def _final_weights(run_dir):
    return load_file(run_dir / "checkpoints" / "final" / "model.safetensors")


def test_monitoring_does_not_change_training(runs):
    plain, monitored = _final_weights(runs["plain"]), _final_weights(runs["monitored"])
    assert plain.keys() == monitored.keys()
    assert all(torch.equal(plain[name], monitored[name]) for name in plain)


def test_z_loss_weight_changes_the_update_but_the_logged_loss_stays_the_cross_entropy(runs, base):
    z_run = train(tiny_config([*base, "run_name=z_loss", "optim.z_loss=0.01"])).run_dir
    plain, z = _records(runs["plain"])[-1], _records(z_run)[-1]
    assert z["loss"] != plain["loss"]
    # z-loss is about log(512)^2 = 39 here: 0.39 more if it were logged, far beyond what it changes in 4 steps
    assert z["loss"] == pytest.approx(plain["loss"], abs=0.1)


def test_blocks_recomputed_in_the_backward_are_not_counted_twice():
    def monitored_step(checkpointing: bool) -> Tally:
        model = _model().train()
        if checkpointing:  # as the trainer enables it (the method's name differs across transformers 5.x)
            (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
        tally = Tally()
        ids = _batch()
        with MonitorHooks(model, tally, 3) as hooks:
            with hooks.recording():
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()  # recomputes every block's forward under checkpointing, outside recording()
        return tally

    plain, recomputed = monitored_step(False), monitored_step(True)
    # pooled statistics of a tensor seen twice are unchanged: the element counts show a second count
    counts = {name: float(piece[0]) for name, (kind, piece) in plain.sums.items() if kind == "moments"}
    assert counts["monitor/norm/model.layers.1.input_layernorm/in"] == 3 * 12 * 32
    assert {name: float(piece[0]) for name, (kind, piece) in recomputed.sums.items() if kind == "moments"} == counts
    assert recomputed.record() == pytest.approx(plain.record(), rel=1e-6)


@pytest.mark.parametrize(("override", "message"), [
    ("monitor.every=-1", r"monitor\.every=-1: must be >= 0"),
    ("monitor.spike_window=2", r"monitor\.spike_window=2: must be at least 4"),
    ("monitor.spike_sigmas=0", r"monitor\.spike_sigmas=0\.0: must be > 0"),
    ("monitor.attention_sequences=0", r"monitor\.attention_sequences=0: must be a positive integer"),
    ("optim.z_loss=-0.1", r"optim\.z_loss=-0\.1: must be >= 0"),
])
def test_bad_monitor_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config([override])


def test_every_statistic_in_the_docs_tables_is_logged(runs):
    """The statistic names of docs/monitoring.md's tables are the ones a run writes (both ways)."""
    text = (ROOT / "docs" / "monitoring.md").read_text()
    documented, in_statistics_table = set(), False
    for line in text.splitlines():
        if line.startswith("| statistic |"):
            in_statistics_table = True
        elif not line.startswith("|"):
            in_statistics_table = False
        elif in_statistics_table and line.startswith("| `"):
            documented |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    records = {r["step"]: r for r in _records(runs["monitored"])}
    logged = {key.rsplit("/", 1)[1] for key in records[2] if key.startswith("monitor/")}
    logged |= {"alpha"}  # DyT and Derf only: this run has IBNorm-T
    assert logged <= documented, logged - documented
    assert documented <= logged, documented - logged
