"""State dicts laid out as the baselines' official codes lay them out load into our models and give the
output of the official forward, written out here in float64 from those codes:

- galore_llama: pixeli99/MixLN and lmsdss/LayerNorm-Scaling, peft_pretraining/modeling_llama.py
  (LlamaDecoderLayer.forward, norm_type 'post' and 'post_pre': x = N_pa(x + Attn(x)), x = N_pf(x + MLP(x))
  in the first POST_NUM blocks; 'pre' elsewhere; rotate_half RoPE);
- nanogpt_gpt2: zlab-princeton/Derf "language model"/model_derf.patch on nanoGPT's model.py
  (Dynamic_erf: weight * erf(alpha * x + shift) + bias, alpha and shift of shape (1,);
  x = (tok_emb + pos_emb) * shared_scale; Block: x + attn(ln_1(x)), x + mlp(ln_2(x)); nn.Linear
  layers; MLP c_proj(GELU(c_fc x)) with the exact GELU; lm_head tied to wte);
- fms_llama: jiachenzhu/DyT other_tasks/LLaMA/fms_fsdp/models/llama.py (LayerNormParameterized:
  weight * tanh(alpha * x), alpha of shape (1,); x = shared(x_in) * shared_scale; LLaMABlock.forward
  pre-norm with ln / ff_ln; dec_norm; foundation-model-stack's RotaryEmbedding rotates adjacent pairs,
  fms/modules/positions.py adjusted_qk; MultiHeadAttention's qkv_fused = [query; key; value],
  GatedLinearUnit's wg1_fused = [wg; w1] with w2(silu(wg x) * w1 x)).
"""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from ibnorm_llm.config import ConfigError, EmbedScaleConfig, ModelConfig, NormConfig
from ibnorm_llm.models import build_model, load_model
from ibnorm_llm.models.official import OfficialStateDictError, load_official_state_dict
from ibnorm_llm.models.weights import UnsetWeightsError

VOCAB = 256
D, HEADS, FF, LAYERS = 32, 4, 48, 2
HEAD_DIM = D // HEADS
THETA = 10000.0


def _ours(preset: str = "llama-tiny", **fields) -> torch.nn.Module:
    fields = {"d_model": D, "n_heads": HEADS, "d_ff": FF, "n_layers": LAYERS, **fields}
    model = build_model(ModelConfig(preset=preset, **fields), VOCAB)
    return model.double().eval()


def _vocab(model) -> int:
    return model.config.vocab_size


def _random(*shape, scale=0.2, generator) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale


# ------------------------------------------------------------------ the official forwards, by hand

def _rms(x, weight, eps):
    return weight * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def _angles(positions: int) -> torch.Tensor:
    inverse = THETA ** (-torch.arange(0, HEAD_DIM, 2, dtype=torch.float64) / HEAD_DIM)
    return torch.arange(positions, dtype=torch.float64)[:, None] * inverse  # (T, d/2)


def _rope_halves(x):
    """transformers / GaLore: rotate the two halves of each head, x (T, H, d)."""
    angles = _angles(x.shape[0])[:, None, :]
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    rotated = torch.cat([-x[..., HEAD_DIM // 2:], x[..., :HEAD_DIM // 2]], -1)
    return x * cos + rotated * sin


def _rope_pairs(x):
    """foundation-model-stack: rotate adjacent pairs (2j, 2j+1) of each head, x (T, H, d)."""
    angles = _angles(x.shape[0])[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.stack([even * angles.cos() - odd * angles.sin(), even * angles.sin() + odd * angles.cos()], -1)
    return out.flatten(-2)


def _attention(x, wq, wk, wv, wo, rope, kv_heads):
    T = x.shape[0]
    q = rope((x @ wq.T).view(T, HEADS, HEAD_DIM))
    k = rope((x @ wk.T).view(T, kv_heads, HEAD_DIM)).repeat_interleave(HEADS // kv_heads, dim=1)
    v = (x @ wv.T).view(T, kv_heads, HEAD_DIM).repeat_interleave(HEADS // kv_heads, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(HEAD_DIM)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    out = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(T, D)
    return out @ wo.T


def _glu(x, gate, up, down):
    return (torch.nn.functional.silu(x @ gate.T) * (x @ up.T)) @ down.T


def galore_forward(sd, ids, post_blocks: int, eps: float):
    h = sd["model.embed_tokens.weight"][ids]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        attend = lambda x, p=p: _attention(x, sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"],  # noqa: E731
                                           sd[p + "self_attn.v_proj.weight"], sd[p + "self_attn.o_proj.weight"],
                                           _rope_halves, HEADS)
        mlp = lambda x, p=p: _glu(x, sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"],  # noqa: E731
                                  sd[p + "mlp.down_proj.weight"])
        if i < post_blocks:
            h = _rms(h + attend(h), sd[p + "post_attention_layernorm.weight"], eps)
            h = _rms(h + mlp(h), sd[p + "post_feedforward_layernorm.weight"], eps)
        else:
            h = h + attend(_rms(h, sd[p + "input_layernorm.weight"], eps))
            h = h + mlp(_rms(h, sd[p + "post_attention_layernorm.weight"], eps))
    return _rms(h, sd["model.norm.weight"], eps) @ sd["lm_head.weight"].T


def fms_dyt_forward(sd, ids, kv_heads):
    def dyt(x, name):
        return sd[name + ".weight"] * torch.tanh(sd[name + ".alpha"] * x)

    h = sd["shared.emb.weight"][ids] * sd["shared_scale"]
    q_rows, kv_rows = HEADS * HEAD_DIM, kv_heads * HEAD_DIM
    for i in range(LAYERS):
        p = f"layers.{i}."
        wq, wk, wv = torch.split(sd[p + "attn.qkv_fused.weight"], [q_rows, kv_rows, kv_rows])
        wg, w1 = torch.chunk(sd[p + "ff_sub_layer.wg1_fused.weight"], 2)
        h = h + _attention(dyt(h, p + "ln"), wq, wk, wv, sd[p + "attn.dense.weight"], _rope_pairs, kv_heads)
        h = h + _glu(dyt(h, p + "ff_ln"), wg, w1, sd[p + "ff_sub_layer.w2.weight"])
    return dyt(h, "dec_norm") @ sd["shared.head.weight"].T


def nanogpt_derf_forward(sd, ids):
    def derf(x, name):
        return sd[name + ".weight"] * torch.erf(sd[name + ".alpha"] * x + sd[name + ".shift"]) + sd[name + ".bias"]

    def linear(x, name):
        return x @ sd[name + ".weight"].T + sd[name + ".bias"]

    T = len(ids)
    h = (sd["transformer.wte.weight"][ids] + sd["transformer.wpe.weight"][:T]) * sd["shared_scale"]
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    for i in range(LAYERS):
        p = f"transformer.h.{i}."
        q, k, v = linear(derf(h, p + "ln_1"), p + "attn.c_attn").split(D, dim=-1)
        q, k, v = (t.view(T, HEADS, HEAD_DIM) for t in (q, k, v))
        scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(HEAD_DIM)
        attended = torch.einsum("hqk,khd->qhd", scores.masked_fill(mask, float("-inf")).softmax(-1), v)
        h = h + linear(attended.reshape(T, D), p + "attn.c_proj")
        gelu = torch.nn.functional.gelu(linear(derf(h, p + "ln_2"), p + "mlp.c_fc"))  # exact, nn.GELU()
        h = h + linear(gelu, p + "mlp.c_proj")
    return derf(h, "transformer.ln_f") @ sd["lm_head.weight"].T


# ------------------------------------------------------------------ state dicts as the official codes write them

def galore_state_dict(vocab: int, post_blocks: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {"model.embed_tokens.weight": _random(vocab, D, scale=1.0, generator=g),
          "lm_head.weight": _random(vocab, D, generator=g),
          "model.norm.weight": 1 + _random(D, generator=g)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            sd[p + f"self_attn.{name}.weight"] = _random(D, D, generator=g)
        sd[p + "mlp.gate_proj.weight"] = _random(FF, D, generator=g)
        sd[p + "mlp.up_proj.weight"] = _random(FF, D, generator=g)
        sd[p + "mlp.down_proj.weight"] = _random(D, FF, generator=g)
        sd[p + "self_attn.rotary_emb.inv_freq"] = torch.ones(HEAD_DIM // 2)  # a buffer old transformers saved
        # distinct gains, so that a norm loaded into the wrong place changes the output
        norms = ("post_attention_layernorm", "post_feedforward_layernorm") if i < post_blocks else (
            "input_layernorm", "post_attention_layernorm")
        for norm in norms:
            sd[p + f"{norm}.weight"] = 1 + _random(D, scale=0.5, generator=g)
    return sd


def fms_state_dict(vocab: int, kv_heads: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {"shared.emb.weight": _random(vocab, D, scale=0.02, generator=g),
          "shared.head.weight": _random(vocab, D, generator=g),
          "shared_scale": torch.tensor([math.sqrt(D)], dtype=torch.float64),
          "dec_norm.alpha": torch.tensor([0.7], dtype=torch.float64), "dec_norm.weight": 1 + _random(D, generator=g),
          "rot_emb.cached_freqs": torch.zeros(3)}
    for i in range(LAYERS):
        p = f"layers.{i}."
        sd[p + "attn.qkv_fused.weight"] = _random((HEADS + 2 * kv_heads) * HEAD_DIM, D, generator=g)
        sd[p + "attn.dense.weight"] = _random(D, D, generator=g)
        sd[p + "ff_sub_layer.wg1_fused.weight"] = _random(2 * FF, D, generator=g)
        sd[p + "ff_sub_layer.w2.weight"] = _random(D, FF, generator=g)
        for norm, alpha in (("ln", 0.8), ("ff_ln", 0.2)):
            sd[p + f"{norm}.alpha"] = torch.tensor([alpha + 0.1 * i], dtype=torch.float64)
            sd[p + f"{norm}.weight"] = 1 + _random(D, scale=0.5, generator=g)
    return sd


def nanogpt_state_dict(vocab: int, positions: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    wte = _random(vocab, D, generator=g)
    sd = {"transformer.wte.weight": wte, "lm_head.weight": wte,  # tied, as nanoGPT ties them
          "transformer.wpe.weight": _random(positions, D, generator=g),
          "shared_scale": torch.tensor([math.sqrt(D)], dtype=torch.float64)}
    for name in ("transformer.ln_f", *(f"transformer.h.{i}.{ln}" for i in range(LAYERS) for ln in ("ln_1", "ln_2"))):
        sd |= {f"{name}.alpha": 0.5 + _random(1, scale=0.1, generator=g), f"{name}.shift": _random(1, scale=0.1, generator=g),
               f"{name}.weight": 1 + _random(D, generator=g), f"{name}.bias": _random(D, scale=0.1, generator=g)}
    for i in range(LAYERS):
        p = f"transformer.h.{i}."
        for layer, (rows, cols) in {"attn.c_attn": (3 * D, D), "attn.c_proj": (D, D), "mlp.c_fc": (4 * D, D),
                                    "mlp.c_proj": (D, 4 * D)}.items():
            sd[p + layer + ".weight"] = _random(rows, cols, generator=g)  # nn.Linear: (out, in)
            sd[p + layer + ".bias"] = _random(rows, scale=0.05, generator=g)
        sd[p + "attn.bias"] = torch.ones(1, 1, positions, positions).tril()  # the causal mask without flash attention
    return sd


IDS = torch.tensor([3, 17, 42, 99, 5, 250, 7, 64, 1, 128])
# transformers computes the rotary angles in float32 whatever the model's dtype: 1e-6, not float64's 1e-12.
# Loaded by name as is (the MLP norm in the attention norm's place), the Post-LN logits differ by up to 5.
ATOL = 1e-6


@pytest.mark.parametrize(("placement", "post_blocks"), [("pre", 0), ("post", 2), ("mix", 1)])
def test_a_galore_llama_state_dict_loads_and_gives_the_official_output(placement, post_blocks):
    fields = {"norm_placement": placement, "norm": NormConfig("rmsnorm")}
    if placement == "mix":
        fields["mix_ln_fraction"] = 0.5
    model = _ours(**fields)
    official = galore_state_dict(_vocab(model), post_blocks)
    load_official_state_dict(model, official, "galore_llama")
    eps = model.model.norm.eps
    with torch.no_grad():
        ours = model(IDS[None]).logits[0]
    torch.testing.assert_close(ours, galore_forward(official, IDS, post_blocks, eps), rtol=0, atol=ATOL)
    if post_blocks:  # the official attention norm is our input_layernorm of a Post-LN block, not our MLP norm
        torch.testing.assert_close(model.model.layers[0].input_layernorm.weight,
                                   official["model.layers.0.post_attention_layernorm.weight"])


@pytest.mark.parametrize("fused", [True, False])
def test_a_dyt_fms_llama_state_dict_loads_and_gives_the_official_output(fused):
    kv_heads = 2  # grouped-query attention: the fused projection splits into unequal parts
    model = _ours(norm=NormConfig("dyt", bias=False), n_kv_heads=kv_heads,
                  embed_scale=EmbedScaleConfig(init="sqrt_d", learnable=True))
    official = fms_state_dict(_vocab(model), kv_heads)
    expected = fms_dyt_forward(official, IDS, kv_heads)
    if not fused:  # the unfused names of the same weights
        for i in range(LAYERS):
            p = f"layers.{i}."
            q, k, v = torch.split(official.pop(p + "attn.qkv_fused.weight"), [HEADS * HEAD_DIM] + [kv_heads * HEAD_DIM] * 2)
            official |= {p + "attn.query.weight": q, p + "attn.key.weight": k, p + "attn.value.weight": v}
            official[p + "ff_sub_layer.wg.weight"], official[p + "ff_sub_layer.w1.weight"] = torch.chunk(
                official.pop(p + "ff_sub_layer.wg1_fused.weight"), 2)
    load_official_state_dict(model, official, "fms_llama")
    assert model.model.layers[1].input_layernorm.alpha.shape == ()  # the official (1,) reshaped
    assert model.model.layers[1].input_layernorm.alpha.item() == pytest.approx(0.9)
    with torch.no_grad():
        ours = model(IDS[None]).logits[0]
    torch.testing.assert_close(ours, expected, rtol=0, atol=ATOL)


def test_a_post_ln_state_dict_into_a_pre_ln_model_is_refused_naming_the_blocks():
    model = _ours(norm=NormConfig("rmsnorm"))
    with pytest.raises(OfficialStateDictError, match=r"Post-LN norms .* in blocks \[0, 1\], the model in blocks none"):
        load_official_state_dict(model, galore_state_dict(_vocab(model), post_blocks=2), "galore_llama")


def test_a_state_dict_that_leaves_a_norm_unset_is_refused_naming_it():
    model = _ours(norm=NormConfig("rmsnorm"))
    official = galore_state_dict(_vocab(model), post_blocks=0)
    del official["model.layers.1.post_attention_layernorm.weight"]
    with pytest.raises(OfficialStateDictError, match=r"1 norm tensor\(s\) would stay unset \(model.layers.1.post_attention_layernorm.weight\)"):
        load_official_state_dict(model, official, "galore_llama")


def test_the_dyt_embedding_scale_needs_a_model_with_one():
    model = _ours(norm=NormConfig("dyt", bias=False), n_kv_heads=2)
    with pytest.raises(OfficialStateDictError, match="set model.embed_scale"):
        load_official_state_dict(model, fms_state_dict(_vocab(model), kv_heads=2), "fms_llama")


def test_a_checkpoint_missing_a_norm_tensor_is_refused_naming_it(tmp_path):
    """from_pretrained would fill the missing gain with ones and only log it."""
    model = _ours(norm=NormConfig("rmsnorm")).float()
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["model.layers.0.input_layernorm.weight"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UnsetWeightsError, match=r"1 norm tensor\(s\) would stay unset \(model.layers.0.input_layernorm.weight\)"):
        load_model(tmp_path)


def _derf_gpt2(**fields):
    return _ours("gpt2-tiny", norm=NormConfig("derf"), d_ff=4 * D, mlp_activation="gelu",
                 embed_scale=EmbedScaleConfig(init="sqrt_d", learnable=True), **fields)


def test_a_derf_nanogpt_state_dict_loads_and_gives_the_official_output():
    model = _derf_gpt2()
    official = nanogpt_state_dict(_vocab(model), model.config.n_positions)
    load_official_state_dict(model, official, "nanogpt_gpt2")
    assert model.transformer.h[0].ln_1.alpha.shape == () and model.transformer.embed_scale.shape == (1,)
    with torch.no_grad():
        ours = model(IDS[None]).logits[0]
    torch.testing.assert_close(ours, nanogpt_derf_forward(official, IDS), rtol=0, atol=1e-10)


def test_nanogpt_weights_need_the_exact_gelu():
    model = _ours("gpt2-tiny", norm=NormConfig("derf"), d_ff=4 * D, embed_scale=EmbedScaleConfig(init="sqrt_d", learnable=True))
    with pytest.raises(OfficialStateDictError, match="model.mlp_activation=gelu"):
        load_official_state_dict(model, nanogpt_state_dict(_vocab(model), model.config.n_positions), "nanogpt_gpt2")
    with pytest.raises(OfficialStateDictError, match="loads into a norm_gpt2 model"):
        load_official_state_dict(_ours(), {}, "nanogpt_gpt2")
    with pytest.raises(ConfigError, match="model.mlp_activation=gelu: only GPT-2's MLP"):
        _ours(mlp_activation="gelu")  # LLaMA's MLP is SwiGLU
