"""Export a baseline-norm checkpoint to a stock transformers directory (no remote code).

Only a model whose every norm is exactly the stock one converts: RMSNorm (weight only) for
LLaMA, LayerNorm with weight and bias for GPT-2, one eps throughout, in the stock Pre-LN
placement without LayerNorm Scaling or a query/key norm. Parameter names are
already stock (the norm modules keep transformers' names), so the conversion is a config
rewrite plus a state-dict copy, checked by comparing logits before anything is written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PretrainedConfig, PreTrainedModel

from ibnorm_llm.norms import option_defaults

from .modeling_norm_lm import NormGPT2Config, NormLlamaConfig
from .presets import FAMILY_BASELINE_NORM

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "spiece.model",
    "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
)
"""Tokenizer files (any that exist) copied from the checkpoint next to the exported model."""

# model_type -> (family, stock config class, stock model class, the stock config's eps field)
_STOCK = {
    NormLlamaConfig.model_type: ("llama", LlamaConfig, LlamaForCausalLM, "rms_norm_eps"),
    NormGPT2Config.model_type: ("gpt2", GPT2Config, GPT2LMHeadModel, "layer_norm_epsilon"),
}
_STOCK_OPTIONS = {"rmsnorm": {"affine": True}, "layernorm": {"affine": True, "bias": True}}
"""Options the stock norm has fixed (eps is free but must be the same in every norm)."""
_STOCK_LAYOUT = {"norm_placement": "pre", "norm_scaling": "none", "qk_norm": None, "embed_scale": None}
"""Layout settings of the stock classes (Pre-LN, no scaling, no query/key norm, no embedding scale)."""
_OUR_CONFIG_KEYS = (
    "preset", "norm", "block_norms", "block_mlp_norms", "final_norm", "auto_map", "architectures", "model_type",
    "mix_ln_fraction", "embed_init_std", "deepnorm_alpha", "deepnorm_beta", "ngpt", *_STOCK_LAYOUT,
)


class ExportError(ValueError):
    """The checkpoint cannot become a stock transformers model; the message says why."""


def _effective_options(spec: dict) -> dict:
    """A recorded norm with the constructor's defaults filled in for anything not recorded."""
    return option_defaults(spec["kind"]) | {key: value for key, value in spec.items() if key != "kind"}


def stock_norm_eps(config: PretrainedConfig) -> float:
    """The single eps of a model whose norms are all stock; ExportError naming the first that is not."""
    if config.model_type not in _STOCK:
        raise ExportError(f"model_type {config.model_type!r} is not an ibnorm_llm model; nothing to export")
    family, _, stock_class, _ = _STOCK[config.model_type]
    baseline = FAMILY_BASELINE_NORM[family]
    shared = "; share the checkpoint as is: it loads with trust_remote_code=True"
    if getattr(config, "ngpt", None) is not None:
        raise ExportError(f"cannot export to a stock {stock_class.__name__}: the model is nGPT (model.architecture="
                          f"ngpt: no norms, unit-norm vectors, learned scales){shared}")
    for setting, stock_value in _STOCK_LAYOUT.items():
        value = getattr(config, setting)
        if value != stock_value:
            shown = f"{{kind: {value['kind']}, ...}}" if isinstance(value, dict) and "kind" in value else repr(value)
            raise ExportError(
                f"cannot export to a stock {stock_class.__name__}: model.{setting}={shown}, "
                f"but the stock model has {setting}={stock_value!r}{shared}"
            )
    places = [(f"block {i}", spec) for i, spec in enumerate(config.block_norms)]
    places += [(f"block {i} (MLP)", spec) for i, spec in enumerate(config.block_mlp_norms)]
    places += [("the final norm", config.final_norm)]
    eps_values = set()
    for where, spec in places:
        if spec["kind"] != baseline:
            raise ExportError(
                f"cannot export to a stock {stock_class.__name__}: {where} uses norm {spec['kind']!r}, "
                f"and the stock model only has {baseline!r}{shared}"
            )
        options = _effective_options(spec)
        for option, stock_value in _STOCK_OPTIONS[baseline].items():
            if options[option] != stock_value:
                raise ExportError(
                    f"cannot export to a stock {stock_class.__name__}: {where} uses {baseline} with "
                    f"{option}={options[option]!r}, but the stock {baseline} has {option}={stock_value!r}{shared}"
                )
        eps_values.add(options["eps"])
    if len(eps_values) > 1:
        raise ExportError(
            f"cannot export to a stock {stock_class.__name__}: its norms share one eps, but this model's norms use "
            f"{sorted(eps_values)}{shared}"
        )
    return eps_values.pop()


def to_stock_model(model: PreTrainedModel) -> PreTrainedModel:
    """The same network as a stock ``LlamaForCausalLM``/``GPT2LMHeadModel``, logits checked equal."""
    eps = stock_norm_eps(model.config)
    _, config_class, model_class, eps_field = _STOCK[model.config.model_type]
    fields = {key: value for key, value in model.config.to_dict().items() if key not in _OUR_CONFIG_KEYS}
    fields[eps_field] = eps
    stock = model_class(config_class.from_dict(fields)).to(device=model.device, dtype=model.dtype)
    stock.load_state_dict(model.state_dict(), strict=True)

    was_training = model.training
    model.eval()
    stock.eval()
    probe = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    probe = probe.to(model.device)
    with torch.no_grad():
        ours, theirs = model(probe).logits, stock(probe).logits
    model.train(was_training)
    try:
        torch.testing.assert_close(theirs, ours)
    except AssertionError as err:
        raise RuntimeError(f"the stock {model_class.__name__} does not reproduce the model's logits: {err}") from None
    return stock


def export_model(model: PreTrainedModel, checkpoint: str | Path, out: str | Path) -> list[str]:
    """Write ``model``, loaded from the directory ``checkpoint`` (``ibnorm_llm.checkpoint.load_checkpoint``),
    as a stock transformers directory at ``out`` with the checkpoint's tokenizer files; returns those copied.

    ``out`` must not exist or be empty. The directory appears complete or not at all: it is
    written under a temporary name and renamed at the end.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out}: exists and is not an empty directory; choose a new path")
    stock = to_stock_model(model)

    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    stock.save_pretrained(partial)
    copied = [name for name in TOKENIZER_FILES if (checkpoint / name).is_file()]
    for name in copied:
        shutil.copyfile(checkpoint / name, partial / name)
    if out.exists():
        out.rmdir()
    partial.rename(out)
    return copied
