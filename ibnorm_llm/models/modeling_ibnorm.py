"""LLaMA and GPT-2 whose every normalization layer comes from the ibnorm_llm norm registry.

Thin subclasses of transformers' ``LlamaForCausalLM`` and ``GPT2LMHeadModel``: attention,
RoPE, KV-cache generation, gradient checkpointing and checkpoint I/O are transformers' own;
``__init__`` only swaps the norms, keeping their module names (LLaMA:
``model.layers[i].input_layernorm``, ``post_attention_layernorm``, ``model.norm``; GPT-2:
``transformer.h[i].ln_1``, ``ln_2``, ``transformer.ln_f``) so parameter names stay stock.

The config records each norm as JSON-able data, ``{"kind": <registry name>, <option>: value}``:
``norm`` (the block norm), ``block_norms`` (one entry per block, overrides applied) and
``final_norm``.

This file is copied into every checkpoint (``auto_map``), so that
``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`` works where ibnorm_llm
is not installed. It must therefore import nothing from ibnorm_llm by absolute name: the
registry arrives through the relative module ``ibnorm_norms`` (see that module).
"""

import inspect
import shutil
from pathlib import Path

from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.dynamic_module_utils import get_relative_import_files

from .ibnorm_norms import NORMS, build_norm

NORM_CODE_FILE = "ibnorm_norms.py"


def _check_norm_spec(spec: object, where: str) -> dict:
    if not isinstance(spec, dict) or spec.get("kind") not in NORMS:
        raise ValueError(
            f"{where}={spec!r}: expected a mapping with 'kind' one of {', '.join(NORMS)} plus that norm's options"
        )
    return spec


def _resolve_norm_fields(config: "IBNormLlamaConfig | IBNormGPT2Config", baseline: dict) -> None:
    """Fill unset norm fields (the stock norm by default) and check they fit the depth."""
    config.norm = _check_norm_spec(config.norm if config.norm is not None else baseline, "norm")
    if config.block_norms is None:
        config.block_norms = [dict(config.norm) for _ in range(config.num_hidden_layers)]
    if config.final_norm is None:
        config.final_norm = dict(config.norm)
    _check_norm_spec(config.final_norm, "final_norm")
    if not isinstance(config.block_norms, list) or len(config.block_norms) != config.num_hidden_layers:
        count = len(config.block_norms) if isinstance(config.block_norms, list) else config.block_norms
        raise ValueError(
            f"block_norms has {count} entries but the model has {config.num_hidden_layers} blocks: give one norm per block"
        )
    for i, spec in enumerate(config.block_norms):
        _check_norm_spec(spec, f"block_norms[{i}]")


@strict
class IBNormLlamaConfig(LlamaConfig):
    """``LlamaConfig`` plus the registry norms; unset norms default to stock RMSNorm (``rms_norm_eps``)."""

    model_type = "ibnorm_llama"

    preset: str | None = None
    norm: dict | None = None
    block_norms: list | None = None
    final_norm: dict | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _resolve_norm_fields(self, {"kind": "rmsnorm", "eps": self.rms_norm_eps})


@strict
class IBNormGPT2Config(GPT2Config):
    """``GPT2Config`` plus the registry norms; unset norms default to stock LayerNorm (``layer_norm_epsilon``)."""

    model_type = "ibnorm_gpt2"

    preset: str | None = None
    norm: dict | None = None
    block_norms: list | None = None
    final_norm: dict | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.add_cross_attention:
            raise ValueError("add_cross_attention=True is not supported: its ln_cross_attn would stay a stock LayerNorm")
        _resolve_norm_fields(self, {"kind": "layernorm", "eps": self.layer_norm_epsilon})


def _registry_norm(spec: dict, dim: int) -> nn.Module:
    options = {key: value for key, value in spec.items() if key != "kind"}
    return build_norm(spec["kind"], dim, **options)


def _write_norm_code(folder: Path) -> None:
    """Make the checkpoint's norm code self-contained.

    transformers has copied this file and ``ibnorm_norms.py`` into ``folder``. Inside the package
    that module only re-exports ibnorm_llm.norms, so overwrite it with the file that defines the
    registry and copy the modules that file imports relatively (transitively) beside it, where
    transformers' loader looks for them. Loaded from a checkpoint, ``build_norm`` already lives
    in the flat copy, so re-saving writes the same files.
    """
    registry_file = Path(inspect.getfile(build_norm))
    targets = [(registry_file, folder / NORM_CODE_FILE)]
    targets += [(Path(source), folder / Path(source).name) for source in get_relative_import_files(registry_file)]
    for source, target in targets:
        if not (target.exists() and target.samefile(source)):
            shutil.copyfile(source, target)


class _RegistryNormModel:
    """What both families share: registry-norm initialization and self-contained saving."""

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, tuple(NORMS.values())):
            module.reset_parameters()
        else:
            super()._init_weights(module)

    def _route_norm_init(self, base_model: nn.Module) -> None:
        # transformers initializes a nested PreTrainedModel (the base model, which holds the norms)
        # with that model's own _init_weights, which does not know the registry norms. Its init
        # otherwise equals ours (same PreTrainedModel class family), so route it here.
        base_model._init_weights = self._init_weights

    def save_pretrained(self, save_directory, *args, **kwargs):
        if kwargs.get("push_to_hub"):
            raise ValueError(
                "push_to_hub=True is not supported: the norm code is added after transformers writes the "
                "folder; save locally, then upload the folder"
            )
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            _write_norm_code(Path(save_directory))


class IBNormLlamaForCausalLM(_RegistryNormModel, LlamaForCausalLM):
    """``LlamaForCausalLM`` with registry norms in every block and before the LM head."""

    config_class = IBNormLlamaConfig

    def __init__(self, config: IBNormLlamaConfig):
        super().__init__(config)
        dim = config.hidden_size
        for layer, spec in zip(self.model.layers, config.block_norms, strict=True):
            layer.input_layernorm = _registry_norm(spec, dim)
            layer.post_attention_layernorm = _registry_norm(spec, dim)
        self.model.norm = _registry_norm(config.final_norm, dim)
        self._route_norm_init(self.model)


class IBNormGPT2LMHeadModel(_RegistryNormModel, GPT2LMHeadModel):
    """``GPT2LMHeadModel`` with registry norms in every block and before the LM head."""

    config_class = IBNormGPT2Config

    def __init__(self, config: IBNormGPT2Config):
        super().__init__(config)
        dim = config.hidden_size
        for block, spec in zip(self.transformer.h, config.block_norms, strict=True):
            block.ln_1 = _registry_norm(spec, dim)
            block.ln_2 = _registry_norm(spec, dim)
        self.transformer.ln_f = _registry_norm(config.final_norm, dim)
        self._route_norm_init(self.transformer)


IBNormLlamaConfig.register_for_auto_class()
IBNormLlamaForCausalLM.register_for_auto_class("AutoModelForCausalLM")
IBNormGPT2Config.register_for_auto_class()
IBNormGPT2LMHeadModel.register_for_auto_class("AutoModelForCausalLM")
