"""The DyT/Derf LM recipe and the embedding init, against the published equations written out here.

- embedding scale (jiachenzhu/DyT other_tasks/LLaMA/fms_fsdp/models/llama.py, LLaMA._helper:
  ``x = self.shared(x_in) * self.shared_scale``; zlab-princeton/Derf "language model"/model_derf.patch,
  GPT.forward: ``(tok_emb + pos_emb) * self.shared_scale``), s of shape (1,) initialized to sqrt(d);
- alpha_0 by position (DyT paper, arXiv 2503.10622, Tables 11 and 12: attention / other by width);
- embedding std (pixeli99/MixLN and lmsdss/LayerNorm-Scaling peft_pretraining/modeling_llama.py,
  LlamaPreTrainedModel._init_weights: nn.Embedding ~ N(0, 2/5)).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from ibnorm_llm.config import (
    ConfigError,
    EmbedScaleConfig,
    ModelConfig,
    NormConfig,
    NormOverride,
    PositionAlphaInit,
    load_config,
)
from ibnorm_llm.models import build_model, load_model
from ibnorm_llm.models.modeling_norm_lm import NormLlamaConfig, NormLlamaForCausalLM
from ibnorm_llm.train.optim import decay_split

VOCAB = 4096
# The DyT paper's alpha_0 (attention, other), written out again here from Tables 11 and 12.
PUBLISHED = {1024: (1.0, 1.0), 2048: (1.0, 0.5), 4096: (0.8, 0.2), 5120: (0.6, 0.15), 8192: (0.2, 0.05)}
RECIPE = dict(alpha_init="dyt_width", embed_scale=EmbedScaleConfig(init="sqrt_d", learnable=True))


def _model(family: str = "llama", kind: str = "dyt", seed: int = 0, **fields) -> torch.nn.Module:
    fields.setdefault("n_layers", 2)
    fields.setdefault("norm", NormConfig(kind, bias=False) if kind in ("dyt", "derf") else NormConfig(kind))
    torch.manual_seed(seed)
    return build_model(ModelConfig(preset=f"{family}-tiny", **fields), VOCAB).eval()


def _first_block_input(model, ids: torch.Tensor) -> torch.Tensor:
    """What the first decoder block receives, recorded by a hook registered after the model's own."""
    blocks = model.model.layers if hasattr(model, "model") else model.transformer.h
    seen = {}

    def record(_module, args, kwargs):
        seen["x"] = args[0] if args else kwargs["hidden_states"]

    handle = blocks[0].register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.no_grad():
            model(ids)
    finally:
        handle.remove()
    return seen["x"]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("kind", ["dyt", "derf"])
def test_embedding_scale_multiplies_the_first_block_input_by_a_learnable_sqrt_d(family, kind):
    model = _model(family, kind, **RECIPE).double()
    base = model.model if family == "llama" else model.transformer
    d = model.config.hidden_size
    scale = base.embed_scale
    assert isinstance(scale, torch.nn.Parameter) and scale.shape == (1,) and scale.requires_grad
    assert scale.item() == torch.tensor(math.sqrt(d)).item()  # sqrt(d) in the fp32 the model was built in
    name = "model.embed_scale" if family == "llama" else "transformer.embed_scale"
    assert name in dict(model.named_parameters()) and name in model.state_dict()
    assert name in decay_split(model)[1]  # never weight-decayed, like every scalar and norm parameter

    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        scale.fill_(2.5)  # off its init, so the test sees the parameter and not a constant sqrt(d)
    if family == "llama":
        expected = 2.5 * model.model.embed_tokens.weight[ids]
    else:
        positions = torch.arange(ids.shape[1])
        expected = 2.5 * (model.transformer.wte.weight[ids] + model.transformer.wpe.weight[positions])
    torch.testing.assert_close(_first_block_input(model, ids), expected, rtol=0, atol=0)

    # The gradient reaches s and is dL/ds: a central difference of the float64 loss agrees (the loss
    # computed here, in float64; transformers' own casts the logits to float32).
    def loss_at() -> torch.Tensor:
        logits = model(ids).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())

    loss_at().backward()
    h = 1e-5
    with torch.no_grad():
        scale.fill_(2.5 + h)
        up = loss_at().item()
        scale.fill_(2.5 - h)
        down = loss_at().item()
    assert scale.grad is not None and scale.grad.abs().item() > 0
    assert scale.grad.item() == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9)


def test_a_fixed_embedding_scale_is_a_buffer_and_a_number_init_is_kept():
    model = _model(embed_scale=EmbedScaleConfig(init=3.0, learnable=False))
    assert "model.embed_scale" not in dict(model.named_parameters())
    assert model.state_dict()["model.embed_scale"].tolist() == [3.0]
    ids = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_first_block_input(model, ids), 3.0 * model.model.embed_tokens.weight[ids])


def test_without_the_recipe_there_is_no_scale_and_every_alpha_is_the_specs():
    model = _model(norm=NormConfig("dyt", alpha_init=0.7))
    assert not hasattr(model.model, "embed_scale")
    assert not any("embed_scale" in name for name in model.state_dict())
    alphas = {name: p.item() for name, p in model.named_parameters() if name.endswith(".alpha")}
    assert len(alphas) == 2 * 2 + 1 and set(alphas.values()) == {torch.tensor(0.7).item()}


def _rule(width: int) -> tuple[float, float]:
    """The published row of the widest listed width <= width; the 1024 row below 1024 (the rule implemented)."""
    listed = [w for w in PUBLISHED if w <= width]
    return PUBLISHED[max(listed)] if listed else PUBLISHED[1024]


def _alphas_by_position(model) -> tuple[set[float], set[float], float]:
    layers = model.model.layers
    return ({layer.input_layernorm.alpha.item() for layer in layers},
            {layer.post_attention_layernorm.alpha.item() for layer in layers}, model.model.norm.alpha.item())


@pytest.mark.parametrize("width", [128, 512, 1024, 2048])
@pytest.mark.parametrize("kind", ["dyt", "derf"])
def test_dyt_width_rule_sets_each_positions_alpha_in_built_models(width, kind):
    model = _model(kind=kind, d_model=width, n_heads=4, d_ff=64, n_layers=2, **RECIPE)
    attention, other = _rule(width)
    assert _alphas_by_position(model) == ({attention}, {other}, other)
    assert model.model.embed_scale.item() == pytest.approx(math.sqrt(width), rel=1e-7)


@pytest.mark.parametrize("width, expected", [
    (4096, (0.8, 0.2)), (5120, (0.6, 0.15)), (8192, (0.2, 0.05)),  # published rows
    (3072, (1.0, 0.5)), (6144, (0.6, 0.15)), (16384, (0.2, 0.05)),  # between and beyond: the rule
])
def test_dyt_width_rule_at_widths_too_large_to_allocate_here(width, expected):
    # Built on the meta device (no memory); the recorded specs and the modules' alpha_init are what
    # reset_parameters writes into alpha.
    with torch.device("meta"):
        model = _model(d_model=width, n_heads=8, d_ff=64, n_layers=1, **RECIPE)
    attention, other = expected
    assert expected == _rule(width)
    layer = model.model.layers[0]
    assert (layer.input_layernorm.alpha_init, layer.post_attention_layernorm.alpha_init,
            model.model.norm.alpha_init) == (attention, other, other)
    config = model.config
    assert [s["alpha_init"] for s in config.block_norms] == [attention]
    assert [s["alpha_init"] for s in config.block_mlp_norms] == [other]
    assert config.final_norm["alpha_init"] == other


def test_explicit_position_values_reach_every_norm_of_their_position_peri_and_overrides_included():
    model = _model(
        n_layers=3, norm_placement="peri", alpha_init=PositionAlphaInit(attention=0.8, mlp=0.2, final=0.3),
        norm_overrides=(NormOverride(layers="2", norm=NormConfig("derf", bias=False)),),
    )
    for layer in model.model.layers:
        assert layer.input_layernorm.alpha.item() == layer.attn_output_layernorm.alpha.item() == pytest.approx(0.8)
        assert layer.post_attention_layernorm.alpha.item() == layer.mlp_output_layernorm.alpha.item() \
            == pytest.approx(0.2)
    assert type(model.model.layers[2].input_layernorm).__name__ == "Derf"
    assert model.model.norm.alpha.item() == pytest.approx(0.3)


def test_norms_without_bias_have_the_official_parameters_and_names():
    model = _model(n_layers=1, **RECIPE)
    d = model.config.hidden_size
    shapes = {name: tuple(p.shape) for name, p in model.state_dict().items() if "norm" in name or "scale" in name}
    assert shapes == {
        "model.embed_scale": (1,),
        "model.layers.0.input_layernorm.alpha": (), "model.layers.0.input_layernorm.weight": (d,),
        "model.layers.0.post_attention_layernorm.alpha": (), "model.layers.0.post_attention_layernorm.weight": (d,),
        "model.norm.alpha": (), "model.norm.weight": (d,),
    }
    derf = _model(kind="derf", n_layers=1, **RECIPE)
    assert not any(name.endswith("norm.bias") for name in derf.state_dict())
    assert {name for name in derf.state_dict() if name.endswith("shift")} == {
        "model.layers.0.input_layernorm.shift", "model.layers.0.post_attention_layernorm.shift", "model.norm.shift"}


def _sample_std(weight: torch.Tensor, padding_idx: int | None = None) -> float:
    rows = [i for i in range(weight.shape[0]) if i != padding_idx]
    return weight[rows].double().std().item()


@pytest.mark.parametrize("meta", [False, True], ids=["built", "meta-then-init"])
def test_embed_init_std_sets_the_embedding_tables_only(meta):
    std = (2 / 5) ** 0.5
    cfg = ModelConfig(preset="llama-tiny", n_layers=2, embed_init_std=std)
    torch.manual_seed(0)
    if meta:
        with torch.device("meta"):
            model = build_model(cfg, VOCAB, pad_token_id=0)
        model.to_empty(device="cpu")
        model.init_weights()
    else:
        model = build_model(cfg, VOCAB, pad_token_id=0)
    table = model.model.embed_tokens.weight.detach()
    # 4095 x 128 draws: the sample std is within 1% of sigma with overwhelming probability (its sd is 0.1%).
    assert _sample_std(table, padding_idx=0) == pytest.approx(std, rel=0.01)
    assert table[0].abs().max().item() == 0  # the padding row, as the official _init_weights zeroes it
    assert model.lm_head.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert model.model.layers[0].self_attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.03)


def test_gpt2_embed_init_std_covers_token_and_position_tables_and_the_tied_head():
    model = _model("gpt2", kind="layernorm", embed_init_std=0.3)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert _sample_std(model.transformer.wte.weight.detach()) == pytest.approx(0.3, rel=0.01)
    assert _sample_std(model.transformer.wpe.weight.detach()) == pytest.approx(0.3, rel=0.02)
    assert model.transformer.h[0].attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.03)


def test_without_embed_init_std_the_model_is_drawn_exactly_as_before():
    torch.manual_seed(0)
    before = build_model(ModelConfig(preset="llama-tiny", n_layers=2), VOCAB).state_dict()
    after = _model(kind="rmsnorm", embed_init_std=None, seed=0).state_dict()
    assert before.keys() == after.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert _sample_std(after["model.embed_tokens.weight"]) == pytest.approx(0.02, rel=0.01)


@pytest.mark.parametrize("name, check", [
    ("llama_tiny_dyt", "recipe"), ("llama_tiny_derf", "recipe"),
    ("llama_tiny_rmsnorm_mix", "embed"), ("llama_tiny_rmsnorm_lns", "embed"),
])
def test_shipped_configs_build_with_their_recipe(name, check):
    cfg = load_config(name)
    torch.manual_seed(0)
    model = build_model(cfg.model, VOCAB)
    if check == "recipe":
        d = model.config.hidden_size  # 128: below the paper's narrowest width, so the 1024 row (1.0 / 1.0)
        assert _alphas_by_position(model) == ({1.0}, {1.0}, 1.0)
        assert model.model.embed_scale.item() == pytest.approx(math.sqrt(d))
        assert not any(n.endswith("norm.bias") for n in model.state_dict())
    else:
        assert _sample_std(model.model.embed_tokens.weight.detach()) == pytest.approx((2 / 5) ** 0.5, rel=0.01)


@pytest.mark.parametrize("override, words", [
    ("model.embed_scale.init=-1", ["model.embed_scale.init", "> 0 or sqrt_d"]),
    ("model.embed_scale.init=sqrtd", ["model.embed_scale.init", "'sqrt_d'"]),
    ("model.embed_scale.learnable=yes", ["model.embed_scale.learnable", "true or false"]),
    ("model.embed_init_std=0", ["model.embed_init_std", "> 0", "null for model.init_std"]),
    ("model.alpha_init=dyt", ["model.alpha_init", "'dyt_width'", "{attention, mlp, final}"]),
    ("model.alpha_init.attention=0.8", ["model.alpha_init", "mlp"]),
    ("model.alpha_init={attention: 0.8, mlp: 0, final: 0.2}", ["model.alpha_init.mlp=0", "> 0"]),
])
def test_bad_values_are_config_errors_naming_the_key_and_the_fix(override, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    for word in words:
        assert word in str(err.value), (word, str(err.value))


@pytest.mark.parametrize("fields, words", [
    (dict(norm=NormConfig("rmsnorm"), alpha_init="dyt_width"),
     ["model.alpha_init=dyt_width", "no norm of this model takes alpha_init", "kind dyt or derf"]),
    (dict(norm=NormConfig("dyt", alpha_init=0.5), alpha_init="dyt_width"),
     ["model.norm.alpha_init=0.5", "model.alpha_init=dyt_width", "remove one"]),
    (dict(norm=NormConfig("dyt"), final_norm=NormConfig("dyt", alpha_init=0.1),
          alpha_init=PositionAlphaInit(attention=1, mlp=1, final=1)),
     ["model.final_norm.alpha_init=0.1", "remove one"]),
])
def test_alpha_init_conflicts_are_refused_when_the_model_is_built(fields, words):
    with pytest.raises(ConfigError) as err:
        build_model(ModelConfig(preset="llama-tiny", n_layers=1, **fields), VOCAB)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_a_checkpoint_config_without_the_new_fields_means_what_it_meant(tmp_path):
    """config.json written before these keys: MLP norms are the block norms, no scale, stock init."""
    model = _model(norm=NormConfig("dyt", alpha_init=0.4))
    model.save_pretrained(tmp_path)
    fields = json.loads((tmp_path / "config.json").read_text())
    for key in ("block_mlp_norms", "embed_scale", "embed_init_std"):
        fields.pop(key)
    (tmp_path / "config.json").write_text(json.dumps(fields))
    config = NormLlamaConfig.from_dict(fields)
    assert config.block_mlp_norms == config.block_norms and config.embed_scale is None
    loaded = load_model(tmp_path).eval()
    assert isinstance(loaded, NormLlamaForCausalLM) and not hasattr(loaded.model, "embed_scale")
    ids = torch.randint(0, VOCAB, (1, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_a_checkpoint_with_the_recipe_reloads_its_scale_and_alphas(tmp_path):
    model = _model(**RECIPE)
    with torch.no_grad():
        model.model.embed_scale.fill_(7.0)
        model.model.layers[0].post_attention_layernorm.alpha.fill_(0.33)
    model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path).eval()
    assert loaded.model.embed_scale.item() == 7.0
    assert loaded.model.layers[0].post_attention_layernorm.alpha.item() == pytest.approx(0.33)
    ids = torch.randint(0, VOCAB, (1, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)
