"""HybridNorm (``hybrid``, ``hybrid_star``) and DeepNorm (``deepnorm``) placements, both families.

The block outputs are checked against the papers' equations written out here in float64 from the
block's weights (attention, RoPE, the norms and the MLPs by hand, not through the model's modules):

    HybridNorm   h = x + Attn_QKV(x)             query/key/value normalized per head, before RoPE
                 y = N(h) + FFN(N(h))
    HybridNorm*  block 1 Pre-LN with the QKV norms: h = x + Attn_QKV(N(x)), y = h + FFN(N(h))
    DeepNorm     h = N(alpha x + Attn(x)),  y = N(alpha h + FFN(h)),  alpha = (2L)^(1/4)

and DeepNorm's init: v, the attention output and the FFN weights times beta = (8L)^(-1/4), q and k
untouched (torchscale ``Decoder.__init__``).
"""

from __future__ import annotations

import math

import pytest
import torch

from ibnorm_llm.analysis.capture import norm_modules
from ibnorm_llm.config import ConfigError, ModelConfig, NormConfig, load_config
from ibnorm_llm.models import build_model

FAMILIES = ("llama", "gpt2")


def _blocks(model):
    return model.model.layers if hasattr(model, "model") else model.transformer.h


def _block_io(model, index, tokens):
    block = _blocks(model)[index]
    seen = {}
    handles = [
        block.register_forward_pre_hook(lambda _m, args, kwargs: seen.update(x=args[0]), with_kwargs=True),
        block.register_forward_hook(lambda _m, _args, out: seen.update(y=out[0] if isinstance(out, tuple) else out)),
    ]
    with torch.no_grad():
        model(tokens, use_cache=False)
    for handle in handles:
        handle.remove()
    return seen["x"], seen["y"]


# --- the equations, by hand -------------------------------------------------------------------

def _rms(x, norm):
    return norm.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps)


def _layer(x, norm):
    centred = x - x.mean(-1, keepdim=True)
    return norm.weight * centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + norm.eps) + norm.bias


def _norm(family, x, norm):
    return _rms(x, norm) if family == "llama" else _layer(x, norm)


def _causal_attention(q, k, v):
    """q (B, H, T, d), k and v (B, H, T, d): softmax(q k^T / sqrt(d) + causal mask) v."""
    t = q.shape[-2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1) @ v


def _rope(x, theta):
    """Rotary embedding, rotate-half convention, positions 0..T-1; x (B, H, T, d). The angles, their
    cosine and sine in fp32, as transformers computes them for every model dtype."""
    d, t = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    angles = torch.arange(t, dtype=torch.float32)[:, None] * inv_freq[None]
    angles = torch.cat([angles, angles], -1)
    cos, sin = angles.cos().double(), angles.sin().double()
    rotated = torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rotated * sin


def _attention(family, model, block, x, qkv_norms: bool):
    cfg = model.config
    b, t, _ = x.shape
    heads = cfg.num_attention_heads
    if family == "llama":
        attn, kv_heads, d = block.self_attn, cfg.num_key_value_heads, cfg.head_dim
        q, k, v = x @ attn.q_proj.weight.T, x @ attn.k_proj.weight.T, x @ attn.v_proj.weight.T
    else:
        attn, kv_heads, d = block.attn, heads, cfg.hidden_size // heads
        q, k, v = (x @ attn.c_attn.weight + attn.c_attn.bias).split(cfg.hidden_size, dim=-1)
    q, k, v = q.view(b, t, heads, d), k.view(b, t, kv_heads, d), v.view(b, t, kv_heads, d)
    if qkv_norms:
        q, k, v = _norm(family, q, attn.q_norm), _norm(family, k, attn.k_norm), _norm(family, v, attn.v_norm)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if family == "llama":
        q, k = _rope(q, cfg.rope_parameters["rope_theta"]), _rope(k, cfg.rope_parameters["rope_theta"])
        k, v = k.repeat_interleave(heads // kv_heads, dim=1), v.repeat_interleave(heads // kv_heads, dim=1)
    out = _causal_attention(q, k, v).transpose(1, 2).reshape(b, t, heads * d)
    if family == "llama":
        return out @ attn.o_proj.weight.T
    return out @ attn.c_proj.weight + attn.c_proj.bias


def _ffn(family, block, x):
    mlp = block.mlp
    if family == "llama":
        return (torch.nn.functional.silu(x @ mlp.gate_proj.weight.T) * (x @ mlp.up_proj.weight.T)) @ mlp.down_proj.weight.T
    u = x @ mlp.c_fc.weight + mlp.c_fc.bias
    gelu = 0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))
    return gelu @ mlp.c_proj.weight + mlp.c_proj.bias


NORMS = {"llama": ("input_layernorm", "post_attention_layernorm"), "gpt2": ("ln_1", "ln_2")}


def _reference(family, model, block, placement, x, scale=1.0):
    n_attn, n_ffn = (getattr(block, name) for name in NORMS[family])

    def norm(module, h):
        return _norm(family, h, module) * scale

    if placement == "hybrid":
        h = x + _attention(family, model, block, x, qkv_norms=True)
        normed = norm(n_ffn, h)
        return normed + _ffn(family, block, normed)
    if placement == "hybrid_first":  # HybridNorm*'s first block: Pre-LN with the QKV norms
        h = x + _attention(family, model, block, norm(n_attn, x), qkv_norms=True)
        return h + _ffn(family, block, norm(n_ffn, h))
    alpha = (2 * model.config.num_hidden_layers) ** 0.25
    h = norm(n_attn, alpha * x + _attention(family, model, block, x, qkv_norms=False))
    return norm(n_ffn, alpha * h + _ffn(family, block, h))


def _tiny(make_tiny, perturb, family, **fields):
    model = make_tiny(family, **fields).double()
    perturb(model, scale=0.2)
    return model


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("placement", "index", "equation"), [
    ("hybrid", 0, "hybrid"), ("hybrid", 1, "hybrid"), ("hybrid_star", 0, "hybrid_first"),
    ("hybrid_star", 1, "hybrid"), ("deepnorm", 1, "deepnorm"),
])
def test_block_output_is_the_papers_equation(family, placement, index, equation, make_tiny, perturb, tokens):
    model = _tiny(make_tiny, perturb, family, norm_placement=placement, n_kv_heads=2 if family == "llama" else None)
    x, y = _block_io(model, index, tokens)
    with torch.no_grad():
        expected = _reference(family, model, _blocks(model)[index], equation, x)
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("placement", ["hybrid", "deepnorm"])
def test_layernorm_scaling_multiplies_the_block_norms_by_one_over_sqrt_l(family, placement, make_tiny, perturb, tokens):
    model = _tiny(make_tiny, perturb, family, norm_placement=placement, norm_scaling="lns")
    x, y = _block_io(model, 1, tokens)  # depth 2
    with torch.no_grad():
        expected = _reference(family, model, _blocks(model)[1], placement, x, scale=1 / math.sqrt(2))
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("family", FAMILIES)
def test_hybrid_blocks_have_qkv_norms_and_no_attention_input_norm(family, make_tiny):
    model = make_tiny(family, norm_placement="hybrid_star", n_layers=3, norm=NormConfig(kind="ibnorm", variant="L"))
    blocks = "model.layers" if family == "llama" else "transformer.h"
    attention = "self_attn" if family == "llama" else "attn"
    input_norm = NORMS[family][0]
    keys = set(model.state_dict())
    names = set(norm_modules(model))
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    for index in range(3):
        for part in ("q_norm", "k_norm", "v_norm"):
            module = model.get_submodule(f"{blocks}.{index}.{attention}.{part}")
            assert type(module).__name__ == "IBNorm" and module.dim == head_dim
            assert f"{blocks}.{index}.{attention}.{part}" in names
        has_input_norm = index == 0  # HybridNorm*: Pre-LN in the first block only
        assert (f"{blocks}.{index}.{input_norm}" in names) is has_input_norm
        assert any(k.startswith(f"{blocks}.{index}.{input_norm}.") for k in keys) is has_input_norm


@pytest.mark.parametrize("family", FAMILIES)
def test_deepnorm_alpha_is_recorded_from_the_depth(family, make_tiny):
    model = make_tiny(family, norm_placement="deepnorm", n_layers=3)
    assert model.config.deepnorm_alpha == pytest.approx(6 ** 0.25)
    assert model.config.deepnorm_beta == pytest.approx(24 ** -0.25)
    assert all(block.residual_scale == pytest.approx(6 ** 0.25) for block in _blocks(model))
    other = make_tiny(family, norm_placement="deepnorm", n_layers=3, deepnorm_alpha=2.0, deepnorm_beta=0.5)
    assert other.config.deepnorm_alpha == 2.0 and other.config.deepnorm_beta == 0.5
    assert all(block.residual_scale == 2.0 for block in _blocks(other))
    assert make_tiny(family).config.deepnorm_alpha is None


# --- init -------------------------------------------------------------------------------------

# per family: {parameter suffix in a block: factor relative to the Pre-LN model drawn with the same seed}
def _expected_factors(family, placement, n_layers, beta):
    if family == "llama":
        if placement == "deepnorm":
            return {f"{m}.weight": beta for m in ("self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                                                    "mlp.up_proj", "mlp.down_proj")}
        return {"self_attn.o_proj.weight": 1 / math.sqrt(2 * n_layers), "mlp.down_proj.weight": 1 / math.sqrt(2 * n_layers)}
    if placement == "deepnorm":  # stock GPT-2 draws c_proj with std/sqrt(2L); torchscale draws it like the rest
        return {"attn.c_attn.weight[v]": beta, "attn.c_proj.weight": beta * math.sqrt(2 * n_layers),
                "mlp.c_fc.weight": beta, "mlp.c_proj.weight": beta * math.sqrt(2 * n_layers)}
    return {}  # stock GPT-2 already has the Megatron c_proj init HybridNorm's code uses


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("placement", ["deepnorm", "hybrid", "hybrid_star"])
def test_init_scales_exactly_the_papers_weights(family, placement, make_tiny):
    n_layers = 3
    reference = make_tiny(family, n_layers=n_layers, seed=5)
    model = make_tiny(family, n_layers=n_layers, seed=5, norm_placement=placement)
    beta = (8 * n_layers) ** -0.25
    factors = _expected_factors(family, placement, n_layers, beta)
    ref_params = dict(reference.named_parameters())
    d = model.config.hidden_size
    checked = set()
    for name, param in model.named_parameters():
        if name not in ref_params:
            continue  # norms the placement adds
        suffix = name.split(".", 3)[-1] if name.startswith(("model.layers.", "transformer.h.")) else None
        expected = ref_params[name].detach().clone()
        if suffix == "attn.c_attn.weight" and "attn.c_attn.weight[v]" in factors:
            expected[:, 2 * d:] *= factors["attn.c_attn.weight[v]"]
            checked.add("attn.c_attn.weight[v]")
        elif suffix in factors:
            expected *= factors[suffix]
            checked.add(suffix)
        torch.testing.assert_close(param, expected, rtol=1e-6, atol=0, msg=name)
    assert checked == set(factors)


def test_deepnorm_init_on_the_meta_device_scales_the_same_weights():
    from ibnorm_llm.models.build import build_hf_config
    from ibnorm_llm.models.modeling_norm_lm import NormLlamaForCausalLM

    cfg = build_hf_config(ModelConfig(preset="llama-tiny", norm_placement="deepnorm", n_layers=4), 4096)
    with torch.device("meta"):
        model = NormLlamaForCausalLM(cfg)
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.initialize_weights()
    beta, std = 32 ** -0.25, cfg.initializer_range
    for index in range(4):
        layer = model.model.layers[index]
        for module in (layer.self_attn.v_proj, layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.up_proj,
                       layer.mlp.down_proj):
            assert module.weight.std().item() == pytest.approx(beta * std, rel=0.05)
        for module in (layer.self_attn.q_proj, layer.self_attn.k_proj):
            assert module.weight.std().item() == pytest.approx(std, rel=0.05)
        assert torch.equal(layer.input_layernorm.weight, torch.ones(128))


# --- configs ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.norm_placement=hybrid", "model.qk_norm.kind=rmsnorm"],
         "model.qk_norm is set but model.norm_placement=hybrid: HybridNorm has its own query/key/value norms"),
        (["model.norm_placement=hybrid_star", "model.qk_norm.kind=rmsnorm"],
         "model.qk_norm is set but model.norm_placement=hybrid_star"),
        (["model.deepnorm_alpha=2.0"], "model.deepnorm_alpha=2.0 is set but model.norm_placement=pre: it applies only"),
        (["model.norm_placement=hybrid", "model.deepnorm_beta=0.5"],
         "model.deepnorm_beta=0.5 is set but model.norm_placement=hybrid"),
        (["model.norm_placement=deepnorm", "model.deepnorm_beta=0"], "model.deepnorm_beta=0.0: must be a finite number > 0"),
        (["model.norm_placement=deepnorm", "model.deepnorm_alpha=-1"], "model.deepnorm_alpha=-1.0: must be a finite"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, overrides)


def test_a_norm_that_cannot_take_the_head_width_names_hybridnorm():
    cfg = ModelConfig(preset="llama-tiny", norm_placement="hybrid", norm=NormConfig(kind="ibnorm", num_groups=64))
    with pytest.raises(ConfigError, match=r"model\.norm \(HybridNorm's query/key/value norms\) \(kind 'ibnorm', width 32\)"):
        build_model(cfg, 4096)


def test_the_modeling_config_refuses_what_the_config_file_refuses():
    from ibnorm_llm.models.modeling_norm_lm import NormLlamaConfig

    with pytest.raises(ValueError, match="qk_norm is set but norm_placement='hybrid'"):
        NormLlamaConfig(num_hidden_layers=2, norm_placement="hybrid", qk_norm={"kind": "rmsnorm"})
    with pytest.raises(ValueError, match="deepnorm_alpha=2.0 is set but norm_placement='post'"):
        NormLlamaConfig(num_hidden_layers=2, norm_placement="post", deepnorm_alpha=2.0)


# --- the model around the blocks --------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("placement", ["hybrid", "hybrid_star", "deepnorm"])
def test_checkpoint_round_trip_gives_identical_logits(family, placement, tmp_path, make_tiny, perturb, tokens):
    from transformers import AutoModelForCausalLM

    model = make_tiny(family, norm_placement=placement, norm_scaling="lns" if placement == "deepnorm" else "none")
    perturb(model, scale=0.2)
    model.save_pretrained(tmp_path)
    loaded, info = AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(tokens).logits, model(tokens).logits, rtol=0, atol=1e-5)
    assert loaded.config.norm_placement == placement


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("placement", ["hybrid_star", "deepnorm"])
def test_kv_cache_causality_and_training_step(family, placement, make_tiny, perturb, tokens):
    model = make_tiny(family, norm_placement=placement)
    perturb(model, scale=0.2)
    prompt = torch.tensor([[5, 17, 300, 42, 7]])
    cached = model.generate(prompt, max_new_tokens=5, do_sample=False, use_cache=True)
    uncached = model.generate(prompt, max_new_tokens=5, do_sample=False, use_cache=False)
    assert cached.tolist() == uncached.tolist()
    changed = tokens.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % 100
    with torch.no_grad():
        before, after = model(tokens).logits, model(changed).logits
    torch.testing.assert_close(after[:, :12], before[:, :12], rtol=0, atol=0)
    model.train()
    model(tokens, labels=tokens).loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
