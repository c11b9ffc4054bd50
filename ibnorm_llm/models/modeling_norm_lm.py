"""LLaMA and GPT-2 whose every normalization layer comes from the ibnorm_llm norm registry.

Thin subclasses of transformers' ``LlamaForCausalLM`` and ``GPT2LMHeadModel``: attention,
RoPE, KV-cache generation, gradient checkpointing and checkpoint I/O are transformers' own;
``__init__`` swaps the norms, keeping their module names (LLaMA:
``model.layers[i].input_layernorm``, ``post_attention_layernorm``, ``model.norm``; GPT-2:
``transformer.h[i].ln_1``, ``ln_2``, ``transformer.ln_f``) so parameter names stay stock, and
gives each decoder layer the configured norm placement (``norm_blocks``). Peri-LN adds
``attn_output_layernorm`` / ``mlp_output_layernorm`` (GPT-2: ``ln_attn_out`` / ``ln_mlp_out``)
to each block; a query/key norm adds ``q_norm`` / ``k_norm`` to each attention module, HybridNorm
``q_norm`` / ``k_norm`` / ``v_norm`` (of the block's norm kind) and, outside HybridNorm*'s first
block, no attention input norm (``input_layernorm`` / ``ln_1`` is None). DeepNorm and HybridNorm
scale the init of some block weights (``init_scales`` in ``norm_blocks``).

The config records each norm as JSON-able data, ``{"kind": <registry name>, <option>: value}``:
``norm`` (the block norm), ``block_norms`` (one entry per block, overrides applied: the norms
of the attention sub-layer), ``block_mlp_norms`` (the same for the MLP sub-layer; unset = a
copy of ``block_norms``, as every checkpoint written before it existed meant), ``final_norm``
and ``qk_norm`` (None = none); the block layout: ``norm_placement`` (pre, post, peri, mix,
hybrid, hybrid_star, deepnorm), ``mix_ln_fraction``, ``norm_scaling`` (none, lns) and DeepNorm's
``deepnorm_alpha`` / ``deepnorm_beta`` (None = from the depth; set only under deepnorm); and the embeddings: ``embed_scale``
(``{"init": s0, "learnable": bool}``: the residual stream entering the first block is
multiplied by a scalar ``embed_scale`` of shape (1,) on the base model, initialized to s0;
None = no scale) and ``embed_init_std`` (std of the embedding tables' normal init; None =
``initializer_range``, like the linear layers).

LLaMA only: ``ngpt`` (None = the standard Transformer) makes the model nGPT, the normalized
Transformer (``ngpt_blocks``): no norm modules at all (the block norms are removed, ``model.norm``
is an identity; the norm fields above are still recorded but unused), unit-norm hidden states
and weights, and the learnable vectors of ``ngpt`` (``{name: {"init", "scaling"}}``, the official
values from ``ngpt_blocks.official_scales``). Such a model needs ``post_optimizer_step()`` after
every optimizer step (``requires_post_optimizer_step``), which re-normalizes its matrices.

This file is copied into every checkpoint (``auto_map``), so that
``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`` works where ibnorm_llm
is not installed. It must therefore import nothing from ibnorm_llm by absolute name: the
registry arrives through the relative module ``norm_registry`` (see that module).
"""

import inspect
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers import initialization as init
from transformers.dynamic_module_utils import get_relative_import_files

from .ngpt_blocks import check_scales, make_ngpt, normalize_matrices, reset_scales
from .norm_blocks import (
    HYBRID_PLACEMENTS,
    MIX_LN_FRACTION,
    NORM_SCALINGS,
    PLACEMENTS,
    NormGPT2Block,
    NormLlamaDecoderLayer,
    _PlacedBlock,
    attach_qk_norm,
    block_placements,
    deepnorm_alpha,
    deepnorm_beta,
    norm_output_scale,
)
from .norm_registry import NORMS, build_norm, with_legacy_options

NORM_CODE_FILE = "norm_registry.py"


def _check_norm_spec(spec: object, where: str) -> dict:
    """The spec, checked; one saved before IBNorm's ``lam_role`` existed gets the reading it had then."""
    if not isinstance(spec, dict) or spec.get("kind") not in NORMS:
        raise ValueError(
            f"{where}={spec!r}: expected a mapping with 'kind' one of {', '.join(NORMS)} plus that norm's options"
        )
    return with_legacy_options(spec)


def _check_block_layout(config: "NormLlamaConfig | NormGPT2Config") -> None:
    if config.norm_placement not in PLACEMENTS:
        raise ValueError(f"norm_placement={config.norm_placement!r}: must be one of {', '.join(PLACEMENTS)}")
    if not 0 < config.mix_ln_fraction < 1:
        raise ValueError(f"mix_ln_fraction={config.mix_ln_fraction!r}: must be in (0, 1)")
    if config.norm_scaling not in NORM_SCALINGS:
        raise ValueError(f"norm_scaling={config.norm_scaling!r}: must be one of {', '.join(NORM_SCALINGS)}")
    if config.qk_norm is not None:
        if config.norm_placement in HYBRID_PLACEMENTS:
            raise ValueError(
                f"qk_norm is set but norm_placement={config.norm_placement!r} has its own query/key/value "
                "norms (of the block norm's kind): remove qk_norm"
            )
        config.qk_norm = _check_norm_spec(config.qk_norm, "qk_norm")
    for name in ("deepnorm_alpha", "deepnorm_beta"):
        value = getattr(config, name)
        if value is None:
            continue
        if config.norm_placement != "deepnorm":
            raise ValueError(f"{name}={value!r} is set but norm_placement={config.norm_placement!r}: only deepnorm uses it")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ValueError(f"{name}={value!r}: expected None (from the depth) or a finite number > 0")
    scale = config.embed_scale
    if scale is not None and not (
        isinstance(scale, dict) and set(scale) == {"init", "learnable"} and isinstance(scale["learnable"], bool)
        and isinstance(scale["init"], (int, float)) and not isinstance(scale["init"], bool)
        and 0 < scale["init"] < math.inf
    ):
        raise ValueError(
            f"embed_scale={scale!r}: expected None or {{'init': a finite number > 0, 'learnable': true or false}}"
        )
    std = config.embed_init_std
    if std is not None and (isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 < std < math.inf):
        raise ValueError(f"embed_init_std={std!r}: expected None or a finite number > 0")


def _resolve_norm_fields(config: "NormLlamaConfig | NormGPT2Config", baseline: dict) -> None:
    """Fill unset norm fields (the stock norm by default) and check they fit the depth."""
    config.norm = _check_norm_spec(config.norm if config.norm is not None else baseline, "norm")
    if config.block_norms is None:
        config.block_norms = [dict(config.norm) for _ in range(config.num_hidden_layers)]
    if config.final_norm is None:
        config.final_norm = dict(config.norm)
    config.final_norm = _check_norm_spec(config.final_norm, "final_norm")
    if not isinstance(config.block_norms, list) or len(config.block_norms) != config.num_hidden_layers:
        count = len(config.block_norms) if isinstance(config.block_norms, list) else config.block_norms
        raise ValueError(
            f"block_norms has {count} entries but the model has {config.num_hidden_layers} blocks: give one norm per block"
        )
    config.block_norms = [_check_norm_spec(spec, f"block_norms[{i}]") for i, spec in enumerate(config.block_norms)]
    if config.block_mlp_norms is None:  # written before the MLP norms could differ: the same norms
        config.block_mlp_norms = [dict(spec) for spec in config.block_norms]
    if not isinstance(config.block_mlp_norms, list) or len(config.block_mlp_norms) != config.num_hidden_layers:
        count = len(config.block_mlp_norms) if isinstance(config.block_mlp_norms, list) else config.block_mlp_norms
        raise ValueError(
            f"block_mlp_norms has {count} entries but the model has {config.num_hidden_layers} blocks: "
            "give one norm per block (or leave it unset for the same norms as block_norms)"
        )
    config.block_mlp_norms = [
        _check_norm_spec(spec, f"block_mlp_norms[{i}]") for i, spec in enumerate(config.block_mlp_norms)
    ]
    _check_block_layout(config)


@dataclass
class _NormFields:
    """The fields both families' configs add (see the module docstring)."""

    preset: str | None = None
    norm: dict | None = None
    block_norms: list | None = None
    block_mlp_norms: list | None = None
    final_norm: dict | None = None
    qk_norm: dict | None = None
    norm_placement: str = "pre"
    mix_ln_fraction: float = MIX_LN_FRACTION
    norm_scaling: str = "none"
    embed_scale: dict | None = None
    embed_init_std: float | None = None
    deepnorm_alpha: float | None = None
    deepnorm_beta: float | None = None


@strict
class NormLlamaConfig(_NormFields, LlamaConfig):
    """``LlamaConfig`` plus the registry norms and their placement; unset norms default to stock
    RMSNorm (``rms_norm_eps``), the placement to Pre-LN."""

    model_type = "norm_llama"
    ngpt: dict | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _resolve_norm_fields(self, {"kind": "rmsnorm", "eps": self.rms_norm_eps})
        if self.ngpt is not None:
            self.ngpt = check_scales(self.ngpt)
            if self.num_key_value_heads != self.num_attention_heads:
                raise ValueError(
                    f"ngpt with num_key_value_heads={self.num_key_value_heads} != num_attention_heads="
                    f"{self.num_attention_heads}: nGPT scales queries and keys with one s_qk per head, so it "
                    "needs as many key/value heads as query heads"
                )


@strict
class NormGPT2Config(_NormFields, GPT2Config):
    """``GPT2Config`` plus the registry norms and their placement; unset norms default to stock
    LayerNorm (``layer_norm_epsilon``), the placement to Pre-LN."""

    model_type = "norm_gpt2"

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

    transformers has copied this file and its relative imports (``norm_blocks.py``,
    ``norm_registry.py``) into ``folder``. Inside the package ``norm_registry`` only re-exports
    ibnorm_llm.norms, so overwrite it with the file that defines the registry and copy the modules that file imports relatively (transitively) beside it, where
    transformers' loader looks for them. Loaded from a checkpoint, ``build_norm`` already lives
    in the flat copy, so re-saving writes the same files.
    """
    registry_file = Path(inspect.getfile(build_norm))
    targets = [(registry_file, folder / NORM_CODE_FILE)]
    targets += [(Path(source), folder / Path(source).name) for source in get_relative_import_files(registry_file)]
    for source, target in targets:
        if not (target.exists() and target.samefile(source)):
            shutil.copyfile(source, target)


class _EmbedScaleHook:
    """Forward pre-hook on the first decoder block: its input (the embeddings; GPT-2: token plus
    position embeddings) times the base model's ``embed_scale``, in the input's dtype. A callable
    object, not a closure, so that ``copy.deepcopy`` and pickling carry it over to the copy's scale."""

    def __init__(self, base_model: nn.Module) -> None:
        self.base_model = base_model

    def __call__(self, _module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        scale = self.base_model.embed_scale
        if args:
            return (args[0] * scale.to(args[0].dtype), *args[1:]), kwargs
        hidden = kwargs["hidden_states"]
        return args, {**kwargs, "hidden_states": hidden * scale.to(hidden.dtype)}


def _scale_init(block: nn.Module) -> None:
    """Multiply the weights (and biases) the block's placement initializes scaled (``scaled_init``),
    each once: at construction those the base model's constructor drew (not those on the meta
    device), in ``initialize_weights`` those it has just drawn. A weight loaded from a checkpoint
    (``_is_hf_initialized``) or scaled already (``_init_scaled``) is left as it is."""
    for name, factor, part in getattr(block, "scaled_init", ()):
        module = block.get_submodule(name)
        for param in (module.weight, getattr(module, "bias", None)):
            if param is None or param.device.type == "meta" or getattr(param, "_is_hf_initialized", False) \
                    or getattr(param, "_init_scaled", False):
                continue
            with torch.no_grad():
                (param if part is None else param.chunk(3, dim=-1)[part]).mul_(factor)
            param._init_scaled = True


class _RegistryNormModel:
    """What both families share: registry-norm initialization and self-contained saving."""

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, tuple(NORMS.values())):
            module.reset_parameters()
            return
        super()._init_weights(module)
        embed_std = self.config.embed_init_std
        if isinstance(module, nn.Embedding) and embed_std is not None:
            # After the family's own init, so this std wins for the embedding tables only (a tied LM
            # head is the same tensor and shares it).
            init.normal_(module.weight, mean=0.0, std=embed_std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        scale = module._parameters.get("embed_scale", module._buffers.get("embed_scale"))
        if scale is not None:
            init.constant_(scale, self.config.embed_scale["init"])

    def initialize_weights(self) -> None:
        # transformers skips ``_init_weights`` for a module of custom code without parameters of its
        # own (the decoder blocks), so the blocks' scaled init is applied here, after every draw.
        super().initialize_weights()
        for module in self.modules():
            if isinstance(module, _PlacedBlock):
                _scale_init(module)

    def _init_embeddings(self, base_model: nn.Module) -> None:
        """Draw the embedding tables again with ``config.embed_init_std`` when it is set.

        The base model initialized its tables in its own constructor, with its own ``_init_weights``
        (``initializer_range``), before this class could route it here; a model built on the meta
        device gets the std from ``_init_weights`` instead. Nothing is drawn when the std is unset, so
        a model without it is initialized exactly as before the option existed.
        """
        std = self.config.embed_init_std
        if std is None:
            return
        with torch.no_grad():
            for module in base_model.modules():
                if isinstance(module, nn.Embedding) and module.weight.device.type != "meta":
                    module.weight.normal_(mean=0.0, std=std)
                    if module.padding_idx is not None:
                        module.weight[module.padding_idx].zero_()

    def _place_embed_scale(self, base_model: nn.Module, blocks: nn.ModuleList) -> None:
        """The learnable (or fixed) embedding scale of ``config.embed_scale`` on ``base_model``, applied
        to the first block's input."""
        spec = self.config.embed_scale
        if spec is None:
            return
        value = torch.full((1,), float(spec["init"]))
        if spec["learnable"]:
            base_model.embed_scale = nn.Parameter(value)
        else:
            base_model.register_buffer("embed_scale", value)
        blocks[0].register_forward_pre_hook(_EmbedScaleHook(base_model), with_kwargs=True)

    def _route_norm_init(self, base_model: nn.Module) -> None:
        # transformers initializes a nested PreTrainedModel (the base model, which holds the norms)
        # with that model's own _init_weights, which does not know the registry norms. Its init
        # otherwise equals ours (same PreTrainedModel class family), so route it here.
        base_model._init_weights = self._init_weights

    def _place_norms(self, blocks: nn.ModuleList, block_class: type, attention_name: str, head_dim: int) -> None:
        """Registry norms, placement and query/key norms for every decoder block, in place."""
        config, dim = self.config, self.config.hidden_size
        placements = block_placements(config.norm_placement, len(blocks), config.mix_ln_fraction)
        layout = zip(blocks, config.block_norms, config.block_mlp_norms, placements, strict=True)
        deepnorm = config.norm_placement == "deepnorm"
        alpha = config.deepnorm_alpha or deepnorm_alpha(len(blocks))
        beta = config.deepnorm_beta or deepnorm_beta(len(blocks))
        scaled_init = block_class.init_scales(config.norm_placement, len(blocks), beta)
        for index, (block, spec, mlp_spec, placement) in enumerate(layout):
            block_class.adopt(
                block, placement, norm_output_scale(config.norm_scaling, index), alpha if deepnorm else 1.0
            )
            (input_norm, output_norm), (mlp_input_norm, mlp_output_norm) = block_class.NORM_NAMES
            setattr(block, input_norm, None if placement == "hybrid" else _registry_norm(spec, dim))
            setattr(block, mlp_input_norm, _registry_norm(mlp_spec, dim))
            if placement == "peri":
                setattr(block, output_norm, _registry_norm(spec, dim))
                setattr(block, mlp_output_norm, _registry_norm(mlp_spec, dim))
            if config.qk_norm is not None:
                attach_qk_norm(
                    getattr(block, attention_name), lambda: _registry_norm(config.qk_norm, head_dim), head_dim
                )
            if config.norm_placement in HYBRID_PLACEMENTS:
                attach_qk_norm(
                    getattr(block, attention_name), lambda spec=spec: _registry_norm(spec, head_dim), head_dim,
                    value=True,
                )
            block.scaled_init = list(scaled_init)
            _scale_init(block)
        # FSDP's transformer-based wrap and device maps find blocks by these class names; the stock
        # name (collected from the base model at post_init) no longer names any module.
        self._no_split_modules = {block_class.__name__}

    def save_pretrained(self, save_directory, *args, **kwargs):
        if kwargs.get("push_to_hub"):
            raise ValueError(
                "push_to_hub=True is not supported: the norm code is added after transformers writes the "
                "folder; save locally, then upload the folder"
            )
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            _write_norm_code(Path(save_directory))


class NormLlamaForCausalLM(_RegistryNormModel, LlamaForCausalLM):
    """``LlamaForCausalLM`` with registry norms in every block and before the LM head."""

    config_class = NormLlamaConfig

    def __init__(self, config: NormLlamaConfig):
        super().__init__(config)
        if config.ngpt is not None:
            make_ngpt(self, config.ngpt)
            self._route_norm_init(self.model)
            return
        self._place_norms(self.model.layers, NormLlamaDecoderLayer, "self_attn", config.head_dim)
        self.model.norm = _registry_norm(config.final_norm, config.hidden_size)
        self._place_embed_scale(self.model, self.model.layers)
        self._route_norm_init(self.model)
        self._init_embeddings(self.model)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if self.config.ngpt is not None:  # nGPT: its vectors at their stored init, its matrices on the sphere
            reset_scales(module)
            weight = getattr(module, "weight", None)
            if getattr(module, "ngpt_unit_dim", None) is not None and not getattr(weight, "_is_hf_initialized", False):
                normalize_matrices(module)

    @property
    def requires_post_optimizer_step(self) -> bool:
        """Whether ``post_optimizer_step`` must run after every optimizer step (nGPT)."""
        return self.config.ngpt is not None

    def post_optimizer_step(self) -> None:
        """What the model needs after each optimizer step: nGPT re-normalizes its matrices; others nothing."""
        if self.config.ngpt is not None:
            normalize_matrices(self)


class NormGPT2LMHeadModel(_RegistryNormModel, GPT2LMHeadModel):
    """``GPT2LMHeadModel`` with registry norms in every block and before the LM head."""

    config_class = NormGPT2Config

    def __init__(self, config: NormGPT2Config):
        super().__init__(config)
        head_dim = config.hidden_size // config.num_attention_heads
        self._place_norms(self.transformer.h, NormGPT2Block, "attn", head_dim)
        self.transformer.ln_f = _registry_norm(config.final_norm, config.hidden_size)
        self._place_embed_scale(self.transformer, self.transformer.h)
        self._route_norm_init(self.transformer)
        self._init_embeddings(self.transformer)


NormLlamaConfig.register_for_auto_class()
NormLlamaForCausalLM.register_for_auto_class("AutoModelForCausalLM")
NormGPT2Config.register_for_auto_class()
NormGPT2LMHeadModel.register_for_auto_class("AutoModelForCausalLM")
