"""State dicts written by the baselines' official codes, renamed and reshaped into this package's models.

Three layouts (docs/baselines.md#official-checkpoints gives the full name tables):

- ``galore_llama``: the LLaMA of GaLore's ``peft_pretraining/modeling_llama.py`` as forked by the
  Mix-LN code (pixeli99/MixLN, Post-LN and Mix-LN) and the LayerNorm Scaling code
  (lmsdss/LayerNorm-Scaling). Names are transformers' LLaMA names, except in a Post-LN block:
  there the official code calls the norm after the attention ``post_attention_layernorm`` and the
  norm after the MLP ``post_feedforward_layernorm``, where our Post-LN block reuses
  ``input_layernorm`` and ``post_attention_layernorm`` (the stock names, so that a Pre-LN checkpoint
  and a Post-LN one have the same keys). Loaded as is, the official attention norm would land in
  our MLP norm without an error; here each block's names are mapped by the placement the model
  gives that block, and a block that is Post-LN in one and Pre-LN in the other is an error.
- ``fms_llama``: the LLaMA of the DyT code (jiachenzhu/DyT ``other_tasks/LLaMA/fms_fsdp/models/llama.py``,
  on IBM's foundation-model-stack): ``shared.emb`` / ``shared.head`` / ``shared_scale`` (or the later
  ``base_model.embedding`` / ``head``), ``layers.<i>.ln`` and ``ff_ln`` (DyT: ``alpha`` of shape (1,) and
  ``weight``), ``attn.query|key|value|dense`` or the fused ``attn.qkv_fused``, ``ff_sub_layer.wg|w1|w2``
  or the fused ``wg1_fused``, ``dec_norm``. Its rotary embedding rotates adjacent pairs (the RoPE
  paper's order), transformers' rotates the two halves of each head: the query and key rows are
  permuted per head so that both give the same attention (the inverse of foundation-model-stack's
  own ``_hf_to_fms_rope``).

- ``nanogpt_gpt2``: nanoGPT's GPT-2 as the Derf code patches it (zlab-princeton/Derf ``language model/
  model_derf.patch``; its norm_type also selects DyT or LayerNorm): transformers' GPT-2 names, the
  linear layers stored as ``nn.Linear`` (out, in) where transformers' ``Conv1D`` keeps (in, out), the
  embedding scale ``shared_scale``, the causal-mask buffer ``attn.bias``. Its MLP's GELU is exact, so the
  model must be built with ``model.mlp_activation=gelu``.

Every scalar the official code stores with shape (1,) (DyT/Derf ``alpha`` and ``shift``, the
embedding scale) is reshaped to the model's. :func:`load_official_state_dict` then loads strictly:
a tensor of the model that the state dict leaves unset is an error naming it (norms first), and
so is a tensor the model has no place for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch
from torch import nn

from ibnorm_llm.models.norm_blocks import block_placements
from ibnorm_llm.models.weights import describe_unset, unset_tensors


class OfficialStateDictError(ValueError):
    """An official state dict does not fit the model; the message names the tensors and the setting to change."""


# ---------------------------------------------------------------- galore_llama (Mix-LN, LNS)

_GALORE_BLOCK_NORM = re.compile(r"^model\.layers\.(\d+)\.(input_layernorm|post_attention_layernorm|post_feedforward_layernorm)\.")
_POST_NAMES = {"post_attention_layernorm": "input_layernorm", "post_feedforward_layernorm": "post_attention_layernorm"}


def _galore_llama(state_dict: Mapping[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    placements = block_placements(config.norm_placement, config.num_hidden_layers, config.mix_ln_fraction)
    official_post = {int(m.group(1)) for name in state_dict if (m := _GALORE_BLOCK_NORM.match(name))
                     and m.group(2) == "post_feedforward_layernorm"}
    ours_post = {i for i, placement in enumerate(placements) if placement == "post"}
    if official_post != ours_post:
        raise OfficialStateDictError(
            f"the state dict has Post-LN norms (post_feedforward_layernorm) in blocks {sorted(official_post) or 'none'}, "
            f"the model in blocks {sorted(ours_post) or 'none'} (model.norm_placement={config.norm_placement}"
            + (f", mix_ln_fraction={config.mix_ln_fraction}" if config.norm_placement == "mix" else "")
            + "): set model.norm_placement (post, or mix with mix_ln_fraction = the official POST_NUM / n_layers) to match"
        )
    converted = {}
    for name, tensor in state_dict.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue  # a buffer transformers recomputes from rope_theta
        match = _GALORE_BLOCK_NORM.match(name)
        if match and int(match.group(1)) in ours_post:
            block, norm = int(match.group(1)), match.group(2)
            if norm not in _POST_NAMES:
                raise OfficialStateDictError(f"{name}: a Post-LN block of the official code has no {norm}")
            name = f"model.layers.{block}.{_POST_NAMES[norm]}." + name[match.end():]
        converted[name] = tensor
    return converted


# ---------------------------------------------------------------- fms_llama (DyT)

_FMS_RENAMES = (
    (re.compile(r"^(?:base_model\.)?(?:shared\.emb|embedding)\.weight$"), "model.embed_tokens.weight"),
    (re.compile(r"^(?:base_model\.)?shared\.head\.weight$|^head\.weight$"), "lm_head.weight"),
    (re.compile(r"^(?:base_model\.)?shared_scale$"), "model.embed_scale"),
    (re.compile(r"^(?:base_model\.)?dec_norm\."), "model.norm."),
    (re.compile(r"^(?:base_model\.)?layers\.(\d+)\.ln\."), r"model.layers.\1.input_layernorm."),
    (re.compile(r"^(?:base_model\.)?layers\.(\d+)\.ff_ln\."), r"model.layers.\1.post_attention_layernorm."),
    (re.compile(r"^(?:base_model\.)?layers\.(\d+)\.attn\.(?:in_proj\.)?query\."), r"model.layers.\1.self_attn.q_proj."),
    (re.compile(r"^(?:base_model\.)?layers\.(\d+)\.attn\.(?:in_proj\.)?key\."), r"model.layers.\1.self_attn.k_proj."),
    (re.compile(r"^(?:base_model\.)?layers\.(\d+)\.attn\.(?:in_proj\.)?value\."), r"model.layers.\1.self_attn.v_proj."),
    (re.compile(r"^(?:base_model\.)?layers\.(\d+)\.attn\.dense\."), r"model.layers.\1.self_attn.o_proj."),
    (re.compile(r"^(?:base_model\.)?layers\.(\d+)\.ff_sub_layer\.wg\."), r"model.layers.\1.mlp.gate_proj."),
    (re.compile(r"^(?:base_model\.)?layers\.(\d+)\.ff_sub_layer\.w1\."), r"model.layers.\1.mlp.up_proj."),
    (re.compile(r"^(?:base_model\.)?layers\.(\d+)\.ff_sub_layer\.w2\."), r"model.layers.\1.mlp.down_proj."),
)
_FMS_FUSED_QKV = re.compile(r"^(?:base_model\.)?layers\.(\d+)\.attn\.(?:in_proj\.)?qkv_fused\.(weight|bias)$")
_FMS_FUSED_GLU = re.compile(r"^(?:base_model\.)?layers\.(\d+)\.ff_sub_layer\.wg1_fused\.(weight|bias)$")
_FMS_DROPPED = re.compile(r"(^|\.)rot_emb\.")


def pairs_to_halves(rows: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Reorder each head's rows of a query/key projection from rotating adjacent pairs (2j, 2j+1) to
    rotating halves (j, j + head_dim/2): row h·d + 2j + c moves to h·d + c·d/2 + j."""
    heads = rows.shape[0] // head_dim
    return rows.reshape(heads, head_dim // 2, 2, *rows.shape[1:]).transpose(1, 2).reshape(rows.shape)


def _fms_llama(state_dict: Mapping[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    head_dim = config.hidden_size // config.num_attention_heads
    q_rows = config.num_attention_heads * head_dim
    kv_rows = config.num_key_value_heads * head_dim
    converted: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        if _FMS_DROPPED.search(name):
            continue  # cached rotary frequencies
        if match := _FMS_FUSED_QKV.match(name):
            block, kind = match.groups()
            query, key, value = torch.split(tensor, [q_rows, kv_rows, kv_rows], dim=0)
            prefix = f"model.layers.{block}.self_attn"
            converted[f"{prefix}.q_proj.{kind}"] = pairs_to_halves(query, head_dim)
            converted[f"{prefix}.k_proj.{kind}"] = pairs_to_halves(key, head_dim)
            converted[f"{prefix}.v_proj.{kind}"] = value
            continue
        if match := _FMS_FUSED_GLU.match(name):
            block, kind = match.groups()
            gate, up = torch.chunk(tensor, 2, dim=0)
            converted[f"model.layers.{block}.mlp.gate_proj.{kind}"] = gate
            converted[f"model.layers.{block}.mlp.up_proj.{kind}"] = up
            continue
        new = next((pattern.sub(target, name) for pattern, target in _FMS_RENAMES if pattern.search(name)), None)
        if new is None:
            raise OfficialStateDictError(f"{name}: not a tensor of the DyT code's LLaMA (layout fms_llama)")
        if new.endswith(("q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias")):
            tensor = pairs_to_halves(tensor, head_dim)
        converted[new] = tensor
    if "model.embed_scale" in converted and config.embed_scale is None:
        raise OfficialStateDictError(
            "the state dict has the DyT recipe's embedding scale (shared_scale) but the model has none: "
            "set model.embed_scale (e.g. {init: sqrt_d, learnable: true}, as configs/llama*_dyt.yaml do)"
        )
    return converted


# ---------------------------------------------------------------- nanogpt_gpt2 (Derf, and DyT through the same patch)

_NANOGPT_TRANSPOSED = re.compile(r"^transformer\.h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
_NANOGPT_MASK = re.compile(r"^transformer\.h\.\d+\.attn\.bias$")


def _nanogpt_gpt2(state_dict: Mapping[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    if config.activation_function != "gelu":
        raise OfficialStateDictError(
            f"nanoGPT's MLP uses the exact GELU (nn.GELU) and the model uses {config.activation_function}: "
            "build it with model.mlp_activation=gelu"
        )
    if "shared_scale" in state_dict and config.embed_scale is None:
        raise OfficialStateDictError(
            "the state dict has the Derf/DyT recipe's embedding scale (shared_scale) but the model has none: "
            "set model.embed_scale (e.g. {init: sqrt_d, learnable: true})"
        )
    converted = {}
    for name, tensor in state_dict.items():
        if _NANOGPT_MASK.match(name):
            continue  # the causal mask nanoGPT registers when it has no flash attention
        if name == "shared_scale":
            name = "transformer.embed_scale"
        elif _NANOGPT_TRANSPOSED.match(name):
            tensor = tensor.t()  # nn.Linear (out, in) -> transformers' Conv1D (in, out)
        converted[name] = tensor
    return converted


LAYOUTS: dict[str, tuple[str, Callable[[Mapping[str, torch.Tensor], object], dict[str, torch.Tensor]]]] = {
    "galore_llama": ("norm_llama", _galore_llama),
    "fms_llama": ("norm_llama", _fms_llama),
    "nanogpt_gpt2": ("norm_gpt2", _nanogpt_gpt2),
}
"""layout name -> (the model type it loads into, converter(state_dict, model config) -> our names)."""

_SCALAR_SUFFIXES = (".alpha", ".shift", "embed_scale")
"""Scalars the official codes store with shape (1,)."""


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], layout: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict`` (official names) in ``model``'s names and shapes."""
    if layout not in LAYOUTS:
        raise OfficialStateDictError(f"layout={layout!r}: must be one of {', '.join(LAYOUTS)}")
    model_type, convert = LAYOUTS[layout]
    if getattr(model.config, "model_type", None) != model_type:
        raise OfficialStateDictError(f"layout {layout} loads into a {model_type} model; the model is a {type(model).__name__}")
    converted = convert(state_dict, model.config)
    own = model.state_dict()
    for name, tensor in converted.items():
        target = own.get(name)
        if (target is not None and name.endswith(_SCALAR_SUFFIXES) and tensor.shape != target.shape
                and tensor.numel() == target.numel() == 1):
            converted[name] = tensor.reshape(target.shape)  # the official (1,) scalars; ours are 0-d (or (1,))
    return converted


def load_official_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], layout: str) -> None:
    """Load a state dict of an official baseline code (``layout``: one of :data:`LAYOUTS`) into ``model``.

    Every tensor of the model must be set and every tensor of the state dict used; shapes must match.
    """
    converted = convert_state_dict(state_dict, layout, model)
    unset = unset_tensors(model, set(converted))
    if unset:
        raise OfficialStateDictError(f"layout {layout}: {describe_unset(model, unset)}; the model's config "
                                     "must build the official model (norm kind, placement, embed_scale, tie_embeddings)")
    own = model.state_dict()
    unexpected = sorted(set(converted) - set(own))
    if unexpected:
        raise OfficialStateDictError(f"layout {layout}: the model has no place for {', '.join(unexpected[:6])}"
                                     + (f" and {len(unexpected) - 6} more" if len(unexpected) > 6 else ""))
    wrong = [f"{name} {tuple(t.shape)} vs the model's {tuple(own[name].shape)}" for name, t in converted.items()
             if t.shape != own[name].shape]
    if wrong:
        raise OfficialStateDictError(f"layout {layout}: shapes differ: {'; '.join(wrong[:4])} (check the model's "
                                     "width, heads, key/value heads and d_ff)")
    model.load_state_dict(converted, strict=False)
