"""Forward-pass behaviour: stock parity with the baseline norm, and every norm choice matters."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from ibnorm_llm.config import NormConfig
from ibnorm_llm.models import PRESETS
from ibnorm_llm.norms import NORMS


def _stock_twin(model, family: str):
    """The stock transformers model with the same sizes, built from the preset (not via our config)."""
    preset = PRESETS[model.config.preset]
    n_layers = model.config.num_hidden_layers
    if family == "llama":
        config = LlamaConfig(
            vocab_size=model.config.vocab_size, hidden_size=preset.d_model, intermediate_size=preset.d_ff,
            num_hidden_layers=n_layers, num_attention_heads=preset.n_heads, max_position_embeddings=preset.max_seq_len,
            rms_norm_eps=1e-6, tie_word_embeddings=False,
        )
        return LlamaForCausalLM(config).eval()
    config = GPT2Config(
        vocab_size=model.config.vocab_size, n_embd=preset.d_model, n_inner=preset.d_ff, n_layer=n_layers,
        n_head=preset.n_heads, n_positions=preset.max_seq_len, layer_norm_epsilon=1e-5,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_baseline_norm_matches_stock_transformers(family, make_tiny, perturb, tokens):
    ours = make_tiny(family)
    perturb(ours)  # non-trivial norm gains and biases, so the weight mapping is really checked
    stock = _stock_twin(ours, family)
    stock.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        expected, got = stock(tokens).logits, ours(tokens).logits
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


# Every registered kind, and each IBNorm variant / option that must change the computation.
NORM_CHOICES = {
    "layernorm": NormConfig(kind="layernorm"),
    "rmsnorm": NormConfig(kind="rmsnorm"),
    "ibnorm-S": NormConfig(kind="ibnorm", variant="S", lam=2.0),
    "ibnorm-L": NormConfig(kind="ibnorm", variant="L", lam=4.0),
    "ibnorm-T": NormConfig(kind="ibnorm", variant="T", lam=4.0),
    "ibnorm-L-raw": NormConfig(kind="ibnorm", variant="L", lam=4.0, deviation="raw"),
    "ibnorm-L-scale": NormConfig(kind="ibnorm", variant="L", lam=4.0, lam_role="scale"),
    "ibnorm-L-rms": NormConfig(kind="ibnorm", variant="L", lam=4.0, standardize="rms"),
    "dyt": NormConfig(kind="dyt"),
    "normalnorm": NormConfig(kind="normalnorm"),
    "derf": NormConfig(kind="derf"),
    "seednorm": NormConfig(kind="seednorm"),
}


def test_norm_choices_cover_the_registry():
    assert {choice.kind for choice in NORM_CHOICES.values()} == set(NORMS)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_every_norm_choice_changes_the_forward_pass(family, make_tiny, perturb, tokens):
    # At init (embedding std 0.02) every raw deviation is below IBNorm-S's knee 1/lambda, where S
    # is the identity and so equals LayerNorm; trained-scale weights (std ~0.5) exercise the knee.
    reference_model = make_tiny(family)
    perturb(reference_model, scale=0.5)
    reference = reference_model.state_dict()
    logits = {}
    for name, norm in NORM_CHOICES.items():
        model = make_tiny(family, norm=norm)
        # Same embeddings, attention and MLP weights everywhere: only the norms differ.
        result = model.load_state_dict(reference, strict=False)
        norm_modules = {name for name, module in model.named_modules() if isinstance(module, tuple(NORMS.values()))}
        for key in result.missing_keys + result.unexpected_keys:
            assert key.rsplit(".", 1)[0] in norm_modules, key
        # Norm-specific parameters (SeeDNorm's beta starts at 0, where it equals RMSNorm) off their init.
        generator = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for key in result.missing_keys:
                model.get_parameter(key).add_(torch.randn(model.get_parameter(key).shape, generator=generator) * 0.5)
        with torch.no_grad():
            logits[name] = model(tokens).logits
        assert torch.isfinite(logits[name]).all(), name
    for (a, la), (b, lb) in itertools.combinations(logits.items(), 2):
        relative = (la - lb).norm() / la.norm()
        assert relative > 1e-3, f"{family}: norm choices {a} and {b} give the same logits (relative diff {relative:.2e})"
