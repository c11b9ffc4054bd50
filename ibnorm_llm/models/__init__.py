"""LLaMA and GPT-2 built on transformers' own classes, with every norm from the registry.

    model = build_model(cfg.model, vocab_size=len(tokenizer))
    model.save_pretrained("ckpt")           # loads anywhere with trust_remote_code=True
    model = load_model("ckpt")              # in-package, no remote code
"""

from .build import (
    MODEL_CLASSES,
    build_hf_config,
    build_model,
    count_parameters,
    load_model,
    padded_vocab_size,
    resolve_norm,
)
from .modeling_norm_lm import NormGPT2Config, NormGPT2LMHeadModel, NormLlamaConfig, NormLlamaForCausalLM
from .presets import FAMILY_BASELINE_NORM, FAMILY_NORM_EPS, PRESETS, Preset

__all__ = [
    "FAMILY_BASELINE_NORM", "FAMILY_NORM_EPS", "MODEL_CLASSES", "PRESETS", "NormGPT2Config", "NormGPT2LMHeadModel",
    "NormLlamaConfig", "NormLlamaForCausalLM", "Preset", "build_model", "count_parameters", "load_model",
    "build_hf_config", "padded_vocab_size", "resolve_norm",
]
