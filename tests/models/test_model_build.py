"""Presets, config recording, per-layer norm overrides, initialization and gradient checkpointing."""

from __future__ import annotations

import pytest
import torch

from ibnorm_llm.config import ConfigError, ModelConfig, NormConfig, NormOverride, load_config
from ibnorm_llm.models import PRESETS, build_model, count_parameters, padded_vocab_size
from ibnorm_llm.norms import DyT, IBNorm, LayerNorm, RMSNorm

VOCAB = 4096

# reference.md (GaLore configs, untied, vocab 32000) and GPT-2 (tied, vocab 50257 padded to 50304).
EXPECTED_PARAMETERS = {
    "llama-60m": (32000, 58.1e6),
    "llama-130m": (32000, 134e6),
    "llama-350m": (32000, 368e6),
    "llama-1b": (32000, 1.34e9),
    "gpt2-124m": (50257, 124e6),
    "gpt2-355m": (50257, 355e6),
}


@pytest.mark.parametrize("preset", EXPECTED_PARAMETERS)
def test_preset_parameter_counts_match_the_papers(preset):
    vocab, expected = EXPECTED_PARAMETERS[preset]
    with torch.device("meta"):  # structure only: the 1B preset is never allocated
        model = build_model(ModelConfig(preset=preset), vocab)
    assert count_parameters(model) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny"])
def test_tiny_presets_are_cpu_sized(preset):
    with torch.device("meta"):
        model = build_model(ModelConfig(preset=preset), VOCAB)
    assert 1e6 <= count_parameters(model) <= 3e6
    assert model.config.max_position_embeddings >= 512


def test_presets_have_the_published_shapes():
    assert {name: (p.d_model, p.d_ff, p.n_heads, p.n_layers) for name, p in PRESETS.items() if "llama" in name} == {
        "llama-tiny": (128, 352, 4, 4),
        "llama-60m": (512, 1376, 8, 8),
        "llama-130m": (768, 2048, 12, 12),
        "llama-350m": (1024, 2736, 16, 24),
        "llama-1b": (2048, 5461, 32, 24),
    }


def test_vocab_is_padded_to_a_multiple_of_64():
    assert [padded_vocab_size(n) for n in (1, 64, 65, 4096, 32000, 50257)] == [64, 64, 128, 4096, 32000, 50304]
    model = build_model(ModelConfig(preset="gpt2-tiny", n_layers=1), 4000)
    assert model.config.vocab_size == 4032
    assert model.get_input_embeddings().weight.shape[0] == 4032


def test_tied_and_untied_embeddings_follow_preset_and_override():
    llama = build_model(ModelConfig(preset="llama-tiny", n_layers=1), VOCAB)
    gpt2 = build_model(ModelConfig(preset="gpt2-tiny", n_layers=1), VOCAB)
    tied_llama = build_model(ModelConfig(preset="llama-tiny", n_layers=1, tie_embeddings=True), VOCAB)
    assert llama.lm_head.weight is not llama.model.embed_tokens.weight
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    assert tied_llama.lm_head.weight is tied_llama.model.embed_tokens.weight
    assert count_parameters(llama) - count_parameters(tied_llama) == VOCAB * 128


@pytest.mark.parametrize(
    ("preset", "kind", "eps"),
    [("llama-tiny", "rmsnorm", 1e-6), ("llama-tiny", "ibnorm", 1e-6), ("gpt2-tiny", "layernorm", 1e-5),
     ("gpt2-tiny", "ibnorm", 1e-5), ("gpt2-tiny", "normalnorm", 1e-5),
     # NormalNorm keeps the official eps in LLaMA too (its sqrt is the guard of the power step)
     ("llama-tiny", "normalnorm", 1e-5)],
)
def test_config_records_preset_and_family_eps(preset, kind, eps):
    model = build_model(ModelConfig(preset=preset, n_layers=2, norm=NormConfig(kind=kind)), VOCAB)
    assert model.config.preset == preset
    assert model.config.norm["kind"] == kind and model.config.norm["eps"] == eps
    assert model.config.block_norms == [model.config.norm] * 2 and model.config.final_norm == model.config.norm
    norms = [m for m in model.modules() if m.__class__.__name__ in {"RMSNorm", "LayerNorm", "IBNorm", "NormalNorm"}]
    assert len(norms) == 5 and {m.eps for m in norms} == {eps}


def test_normalnorms_earlier_reading_takes_the_family_eps_as_it_did():
    """Under the earlier reading eps only standardizes, like LayerNorm's; the official reading keeps 1e-5."""
    old = NormConfig(kind="normalnorm", lmbda_estimate="clamped_finite_difference", second_standardize=True,
                     noise_scale="std", noise_train=0.4)
    assert build_model(ModelConfig(preset="llama-tiny", n_layers=1, norm=old), VOCAB).config.norm["eps"] == 1e-6
    explicit = NormConfig(kind="normalnorm", eps=1e-6)
    assert build_model(ModelConfig(preset="llama-tiny", n_layers=1, norm=explicit), VOCAB).config.norm["eps"] == 1e-6


def test_explicit_eps_and_options_win_and_dyt_gets_no_eps():
    model = build_model(
        ModelConfig(preset="llama-tiny", n_layers=1, norm=NormConfig(kind="ibnorm", variant="T", lam=2.0, eps=1e-3),
                    final_norm=NormConfig(kind="dyt", alpha_init=0.8)),
        VOCAB,
    )
    block = model.model.layers[0].input_layernorm
    assert isinstance(block, IBNorm) and block.eps == 1e-3
    assert model.config.norm["variant"] == "T" and model.config.norm["lam"] == 2.0
    assert "eps" not in model.config.final_norm and model.config.final_norm["alpha_init"] == 0.8
    assert model.model.norm.alpha.item() == pytest.approx(0.8)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_per_layer_overrides_put_each_norm_in_its_blocks(family):
    cfg = ModelConfig(
        preset=f"{family}-tiny",
        norm=NormConfig(kind="rmsnorm"),
        norm_overrides=(
            NormOverride(layers="0-1", norm=NormConfig(kind="ibnorm", variant="L")),
            NormOverride(layers="1", norm=NormConfig(kind="layernorm")),  # later entries win
        ),
        final_norm=NormConfig(kind="dyt"),
    )
    model = build_model(cfg, VOCAB)
    if family == "llama":
        pairs = [(b.input_layernorm, b.post_attention_layernorm) for b in model.model.layers]
        final = model.model.norm
    else:
        pairs = [(b.ln_1, b.ln_2) for b in model.transformer.h]
        final = model.transformer.ln_f
    expected = [IBNorm, LayerNorm, RMSNorm, RMSNorm]
    assert [(type(a), type(b)) for a, b in pairs] == [(cls, cls) for cls in expected]
    assert isinstance(final, DyT)
    assert [spec["kind"] for spec in model.config.block_norms] == ["ibnorm", "layernorm", "rmsnorm", "rmsnorm"]
    assert model.config.norm["kind"] == "rmsnorm" and model.config.final_norm["kind"] == "dyt"
    # Distinct module objects per site: no parameter sharing between blocks.
    assert len({id(m) for pair in pairs for m in pair}) == 8


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(preset="llama-60"), "model.preset='llama-60': unknown preset; did you mean 'llama-60m'?"),
        (dict(preset="llama-tiny", norm_overrides=(NormOverride(layers="3-4", norm=NormConfig(kind="dyt")),)),
         "model.norm_overrides[0].layers='3-4': the model has 4 blocks (0-3)"),
        (dict(preset="gpt2-tiny", n_kv_heads=2), "model.n_kv_heads=2: GPT-2"),
        (dict(preset="llama-tiny", n_heads=3), "model.n_heads=3: must divide model.d_model=128"),
        (dict(preset="llama-tiny", n_kv_heads=3), "model.n_kv_heads=3: must divide model.n_heads=4"),
        (dict(preset="llama-tiny", final_norm=NormConfig(kind="ibnorm", num_groups=3)), "model.final_norm"),
    ],
)
def test_bad_model_settings_raise_config_errors_naming_the_key(fields, message):
    with pytest.raises(ConfigError) as err:
        build_model(ModelConfig(**fields), VOCAB)
    assert message in str(err.value)


def test_model_config_rejects_non_positive_sizes():
    with pytest.raises(ConfigError, match=r"model.d_ff=0: must be a positive integer"):
        load_config(None, ["model.d_ff=0"])


def test_meta_build_then_init_weights_initializes_registry_norms():
    cfg = ModelConfig(preset="llama-tiny", n_layers=2, norm=NormConfig(kind="ibnorm", learnable_lam=True, lam=3.0),
                      final_norm=NormConfig(kind="dyt", alpha_init=0.7))
    with torch.device("meta"):
        model = build_model(cfg, VOCAB)
    model.to_empty(device="cpu")
    with torch.no_grad():  # garbage, as after to_empty: init_weights must overwrite all of it
        for p in model.parameters():
            p.fill_(7.0)
    model.init_weights()
    block = model.model.layers[1].post_attention_layernorm
    assert torch.all(block.weight == 1) and torch.all(block.bias == 0)
    assert block.lam_value.item() == pytest.approx(3.0, rel=1e-5)
    assert model.model.norm.alpha.item() == pytest.approx(0.7)
    assert torch.all(model.model.norm.weight == 1)
    assert model.lm_head.weight.std().item() == pytest.approx(0.02, rel=0.1)
