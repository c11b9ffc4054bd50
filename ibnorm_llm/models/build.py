"""Model construction from a ModelConfig, loading of saved checkpoints, parameter counts."""

from __future__ import annotations

import dataclasses
import difflib
import json
from pathlib import Path
from typing import Any

from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from ibnorm_llm.config import ConfigError, ModelConfig, NormConfig
from ibnorm_llm.norms import accepted_options, resolve_options

from .modeling_norm_lm import NormGPT2Config, NormGPT2LMHeadModel, NormLlamaConfig, NormLlamaForCausalLM
from .ngpt_blocks import official_scales
from .norm_blocks import HYBRID_PLACEMENTS, MIX_LN_FRACTION, deepnorm_alpha, deepnorm_beta, post_ln_blocks
from .presets import FAMILY_NORM_EPS, PRESETS, Preset
from .recipes import dyt_alpha_init, sqrt_d
from .weights import UnsetWeightsError, describe_unset, unset_tensors

MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    NormLlamaConfig.model_type: NormLlamaForCausalLM,
    NormGPT2Config.model_type: NormGPT2LMHeadModel,
}

LEGACY_MODEL_TYPES: dict[str, str] = {"ibnorm_llama": NormLlamaConfig.model_type, "ibnorm_gpt2": NormGPT2Config.model_type}
"""model_type of checkpoints written before the classes were named for any registry norm
(IBNormLlamaForCausalLM, IBNormGPT2LMHeadModel) -> today's. Their config fields are a subset
of today's (the new ones default to the old behaviour: Pre-LN, no scaling, no query/key norm)."""

# In-package loading must not need trust_remote_code: register our classes with the Auto API.
for _model_class in MODEL_CLASSES.values():
    AutoConfig.register(_model_class.config_class.model_type, _model_class.config_class, exist_ok=True)
    AutoModelForCausalLM.register(_model_class.config_class, _model_class, exist_ok=True)

VOCAB_MULTIPLE = 64


def padded_vocab_size(n: int, multiple: int = VOCAB_MULTIPLE) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (64: tensor-core friendly embedding/LM-head shapes)."""
    if n <= 0:
        raise ValueError(f"vocab size {n}: must be positive")
    return -(-n // multiple) * multiple


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (a tied embedding/LM-head matrix counts once)."""
    return sum(p.numel() for p in model.parameters())


def _preset(model_cfg: ModelConfig) -> Preset:
    if model_cfg.preset not in PRESETS:
        close = difflib.get_close_matches(model_cfg.preset, PRESETS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"model.preset={model_cfg.preset!r}: unknown preset; {hint}valid: {', '.join(PRESETS)}")
    return PRESETS[model_cfg.preset]


def resolve_norm(norm_cfg: NormConfig, family: str, dim: int, key: str) -> dict[str, Any]:
    """The norm as the model config records it: kind plus every constructor option, explicit.

    Unset options take the norm's own default, except eps, which takes the family's (1e-6
    LLaMA, 1e-5 GPT-2) for norms that have one and follow it (``follows_family_eps``: NormalNorm
    keeps the official 1e-5, whose square root also guards its power step). Recording every value keeps a checkpoint's
    meaning fixed even if a default changes later. Invalid settings for this width raise
    ConfigError naming ``key``.
    """
    options = norm_cfg.options()
    try:
        if "eps" in accepted_options(norm_cfg.kind) and "eps" not in options and \
                resolve_options(norm_cfg.kind, options).follows_family_eps():
            options["eps"] = FAMILY_NORM_EPS[family]
        resolved = resolve_options(norm_cfg.kind, options, dim)
    except ValueError as err:
        raise ConfigError(f"{key} (kind {norm_cfg.kind!r}, width {dim}): {err}") from None
    return {"kind": norm_cfg.kind, **dataclasses.asdict(resolved)}


def _block_norms(model_cfg: ModelConfig, norm: dict[str, Any], family: str, dim: int, n_layers: int) -> list[dict]:
    """One resolved norm per block: ``norm`` (the resolved model.norm) unless an override applies."""
    for i, override in enumerate(model_cfg.norm_overrides):
        if override.block_indices().stop > n_layers:
            raise ConfigError(
                f"model.norm_overrides[{i}].layers={override.layers!r}: the model has {n_layers} blocks "
                f"(0-{n_layers - 1})"
            )
    resolved = {model_cfg.norm: norm}
    for i, override in enumerate(model_cfg.norm_overrides):
        if override.norm not in resolved:
            resolved[override.norm] = resolve_norm(override.norm, family, dim, f"model.norm_overrides[{i}].norm")
    return [dict(resolved[model_cfg.norm_for_block(i)]) for i in range(n_layers)]


def _position_alphas(model_cfg: ModelConfig, d_model: int) -> tuple[float, float, float] | None:
    """(attention, mlp, final) initial alpha of ``model.alpha_init``, or None when it is unset."""
    rule = model_cfg.alpha_init
    if rule is None:
        return None
    if rule == "dyt_width":
        attention, other = dyt_alpha_init(d_model)
        return attention, other, other
    return rule.attention, rule.mlp, rule.final


def _with_position_alpha(
    model_cfg: ModelConfig, d_model: int, block_norms: list[dict], final_norm: dict
) -> tuple[list[dict], list[dict], dict]:
    """The attention norms, MLP norms and final norm, each DyT/Derf among them with the initial alpha
    of its position under ``model.alpha_init`` (a norm kind without alpha_init is left as it is)."""
    alphas = _position_alphas(model_cfg, d_model)
    mlp_norms = [dict(spec) for spec in block_norms]
    if alphas is None:
        return block_norms, mlp_norms, final_norm
    shown = model_cfg.alpha_init if isinstance(model_cfg.alpha_init, str) else "{attention, mlp, final}"
    named = [("model.norm", model_cfg.norm), ("model.final_norm", model_cfg.final_norm)]
    named += [(f"model.norm_overrides[{i}].norm", o.norm) for i, o in enumerate(model_cfg.norm_overrides)]
    for key, spec in named:
        if spec is not None and "alpha_init" in spec.options():
            raise ConfigError(
                f"{key}.alpha_init={spec.options()['alpha_init']} and model.alpha_init={shown} are both set: "
                f"model.alpha_init sets every DyT/Derf norm's alpha by position; remove one of them"
            )
    takes = [spec for spec in [*block_norms, final_norm] if "alpha_init" in spec]
    if not takes:
        kinds = sorted({spec["kind"] for spec in [*block_norms, final_norm]})
        raise ConfigError(
            f"model.alpha_init={shown}: no norm of this model takes alpha_init (kinds: {', '.join(kinds)}); "
            "it applies to kind dyt or derf: remove it or use one of those norms"
        )
    attention, mlp, final = alphas

    def at(spec: dict, alpha: float) -> dict:
        return {**spec, "alpha_init": alpha} if "alpha_init" in spec else dict(spec)

    return ([at(spec, attention) for spec in block_norms], [at(spec, mlp) for spec in block_norms],
            at(final_norm, final))


def _embedding_fields(model_cfg: ModelConfig, d_model: int) -> dict[str, Any]:
    """The model config's embed_scale ({init, learnable}, the init as a number) and embed_init_std."""
    scale = model_cfg.embed_scale
    resolved = None
    if scale is not None:
        resolved = {"init": sqrt_d(d_model) if scale.init == "sqrt_d" else float(scale.init),
                    "learnable": scale.learnable}
    return dict(embed_scale=resolved, embed_init_std=model_cfg.embed_init_std)


def _block_layout(model_cfg: ModelConfig, family: str, n_layers: int, head_dim: int) -> dict[str, Any]:
    """The placement fields of the model config, checked against the depth and head width."""
    fraction = MIX_LN_FRACTION if model_cfg.mix_ln_fraction is None else model_cfg.mix_ln_fraction
    if model_cfg.norm_placement == "mix" and post_ln_blocks("mix", n_layers, fraction) == 0:
        raise ConfigError(
            f"model.mix_ln_fraction={fraction}: floor({fraction} x {n_layers} blocks) = 0 blocks would use "
            f"Post-LN; raise it to at least {1 / n_layers:.3g} or use norm_placement=pre"
        )
    qk_norm = None
    if model_cfg.qk_norm is not None:
        qk_norm = resolve_norm(model_cfg.qk_norm, family, head_dim, "model.qk_norm")
    if model_cfg.norm_placement in HYBRID_PLACEMENTS:  # the block norms also normalize each head
        resolve_norm(model_cfg.norm, family, head_dim, "model.norm (HybridNorm's query/key/value norms)")
        for i, override in enumerate(model_cfg.norm_overrides):
            key = f"model.norm_overrides[{i}].norm (HybridNorm's query/key/value norms)"
            resolve_norm(override.norm, family, head_dim, key)
    deepnorm = {}
    if model_cfg.norm_placement == "deepnorm":  # recorded as numbers, so a checkpoint's meaning stays fixed
        deepnorm = dict(
            deepnorm_alpha=deepnorm_alpha(n_layers) if model_cfg.deepnorm_alpha is None else model_cfg.deepnorm_alpha,
            deepnorm_beta=deepnorm_beta(n_layers) if model_cfg.deepnorm_beta is None else model_cfg.deepnorm_beta,
        )
    return dict(
        norm_placement=model_cfg.norm_placement, mix_ln_fraction=fraction, norm_scaling=model_cfg.norm_scaling,
        qk_norm=qk_norm, **deepnorm,
    )


def _ngpt_scales(model_cfg: ModelConfig, preset: Preset, n_heads: int, n_kv_heads: int, d_model: int) -> dict | None:
    """The model config's ``ngpt`` (the official init values at this width) under model.architecture=ngpt."""
    if model_cfg.architecture != "ngpt":
        return None
    if preset.family != "llama":
        raise ConfigError(
            f"model.architecture=ngpt with model.preset={model_cfg.preset} ({preset.family}): nGPT is built on "
            "the LLaMA family only (RoPE, SwiGLU, untied head, as in NVIDIA/ngpt); use a llama-* preset"
        )
    if n_kv_heads != n_heads:
        raise ConfigError(
            f"model.n_kv_heads={n_kv_heads} with model.architecture=ngpt: nGPT scales queries and keys with one "
            f"s_qk per head and needs as many key/value heads as query heads ({n_heads}); remove model.n_kv_heads"
        )
    return official_scales(d_model)


def build_hf_config(
    model_cfg: ModelConfig,
    vocab_size: int,
    *,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> NormLlamaConfig | NormGPT2Config:
    """The transformers config ``build_model`` uses: preset sizes, overrides, resolved norms."""
    preset = _preset(model_cfg)
    d_model = model_cfg.d_model or preset.d_model
    n_layers = model_cfg.n_layers or preset.n_layers
    n_heads = model_cfg.n_heads or preset.n_heads
    d_ff = model_cfg.d_ff or preset.d_ff
    max_seq_len = model_cfg.max_seq_len or preset.max_seq_len
    n_kv_heads = model_cfg.n_kv_heads or preset.n_kv_heads or n_heads
    tie = preset.tie_embeddings if model_cfg.tie_embeddings is None else model_cfg.tie_embeddings
    if d_model % n_heads:
        raise ConfigError(f"model.n_heads={n_heads}: must divide model.d_model={d_model}")
    if n_heads % n_kv_heads:
        raise ConfigError(f"model.n_kv_heads={n_kv_heads}: must divide model.n_heads={n_heads}")
    if preset.family != "gpt2" and model_cfg.mlp_activation is not None:
        raise ConfigError(
            f"model.mlp_activation={model_cfg.mlp_activation}: only GPT-2's MLP takes a GELU choice; "
            f"{model_cfg.preset}'s MLP is SwiGLU; remove it"
        )
    if preset.family == "gpt2" and model_cfg.n_kv_heads is not None:
        raise ConfigError(
            f"model.n_kv_heads={model_cfg.n_kv_heads}: GPT-2 ({model_cfg.preset}) has no grouped-query attention; remove it"
        )

    ngpt = _ngpt_scales(model_cfg, preset, n_heads, n_kv_heads, d_model)
    norm = resolve_norm(model_cfg.norm, preset.family, d_model, "model.norm")
    block_norms = _block_norms(model_cfg, norm, preset.family, d_model, n_layers)
    final_norm = (
        norm
        if model_cfg.final_norm is None
        else resolve_norm(model_cfg.final_norm, preset.family, d_model, "model.final_norm")
    )
    block_norms, block_mlp_norms, final_norm = _with_position_alpha(model_cfg, d_model, block_norms, final_norm)
    common: dict[str, Any] = dict(
        vocab_size=padded_vocab_size(vocab_size),
        tie_word_embeddings=tie,
        initializer_range=0.02 if model_cfg.init_std is None else model_cfg.init_std,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        preset=model_cfg.preset,
        norm=norm,
        block_norms=block_norms,
        block_mlp_norms=block_mlp_norms,
        final_norm=final_norm,
        **_block_layout(model_cfg, preset.family, n_layers, d_model // n_heads),
        **_embedding_fields(model_cfg, d_model),
    )
    family_eps = FAMILY_NORM_EPS[preset.family]
    if preset.family == "llama":
        return NormLlamaConfig(
            hidden_size=d_model,
            intermediate_size=d_ff,
            num_hidden_layers=n_layers,
            num_attention_heads=n_heads,
            num_key_value_heads=n_kv_heads,
            max_position_embeddings=max_seq_len,
            rms_norm_eps=family_eps,
            ngpt=ngpt,
            **common,
        )
    # nanoGPT/llm.c pretrain GPT-2 without dropout; transformers' GPT2Config defaults to 0.1.
    return NormGPT2Config(
        n_embd=d_model,
        n_inner=d_ff,
        n_layer=n_layers,
        n_head=n_heads,
        n_positions=max_seq_len,
        layer_norm_epsilon=family_eps,
        activation_function=model_cfg.mlp_activation or "gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        **common,
    )


def build_model(
    model_cfg: ModelConfig,
    vocab_size: int,
    *,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> PreTrainedModel:
    """A freshly initialized model for ``model_cfg``; the vocabulary is padded to a multiple of 64.

    ``vocab_size`` is the tokenizer's; pass its special-token ids so ``generate()`` knows
    them. Build under ``torch.device("meta")`` to get the structure without allocating.
    """
    config = build_hf_config(
        model_cfg, vocab_size, bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id
    )
    # model_cfg.gradient_checkpointing is applied with the other training wrappers
    # (ibnorm_llm.train.distributed.wrap_model).
    return MODEL_CLASSES[config.model_type](config)


def load_model(path: str | Path, **from_pretrained_kwargs: Any) -> PreTrainedModel:
    """Load a checkpoint directory (``save_pretrained`` output) without remote code.

    Our checkpoints load into this package's classes (also those written before the classes'
    rename, see ``LEGACY_MODEL_TYPES``); a stock LLaMA/GPT-2 directory (e.g. ``export_hf.py``
    output) into transformers' own. Extra keyword arguments go to ``from_pretrained`` (e.g.
    ``dtype=torch.bfloat16``).
    """
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{path}: no config.json; expected a checkpoint directory written by save_pretrained "
            "(e.g. runs/<run_name>/checkpoints/final)"
        )
    fields = json.loads(config_file.read_text())
    model_type = LEGACY_MODEL_TYPES.get(fields.get("model_type"), fields.get("model_type"))
    model_class = MODEL_CLASSES.get(model_type)
    if model_class is None:
        model_class = AutoModelForCausalLM
    elif model_type != fields["model_type"]:
        # The old auto_map names classes this package no longer has; today's classes replace it on save.
        fields = {key: value for key, value in fields.items() if key not in ("model_type", "auto_map")}
        from_pretrained_kwargs.setdefault("config", model_class.config_class.from_dict(fields))
    model, info = model_class.from_pretrained(path, output_loading_info=True, **from_pretrained_kwargs)
    # from_pretrained fills what the files lack with a fresh init and only logs it: refuse instead
    unset = unset_tensors(model, set(model.state_dict()) - set(info["missing_keys"]))
    if unset:
        raise UnsetWeightsError(f"{path}: {describe_unset(model, unset)}: the weights were not written for the "
                                "model its config.json describes")
    return model

