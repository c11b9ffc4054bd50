"""Where the norms sit in a decoder block, and the per-head query/key norm.

Each sub-layer F (attention, then the MLP) of block l (counted from 1) updates the residual
stream x with its input norm N_in and, for Peri-LN, its output norm N_out; s is 1, or
1/sqrt(l) under LayerNorm Scaling:

    pre    x + F(s * N_in(x))                     Pre-LN (GPT-2, LLaMA)
    post   s * N_in(x + F(x))                     Post-LN (Vaswani et al., 2017)
    peri   x + s * N_out(F(s * N_in(x)))          Peri-LN (Kim et al., arXiv 2502.02732)
    deepnorm  s * N_in(alpha * x + F(x))          DeepNorm (Wang et al., arXiv 2203.00555)
    hybrid    attention: x + F(x), F with per-head query/key/value norms (no N_in);
              MLP: n + F(n), n = s * N_in(x)      HybridNorm (Zhuo et al., arXiv 2503.04598)

(Mix-LN, arXiv 2412.13795, is ``post`` in the first blocks and ``pre`` in the rest;
HybridNorm*, ``hybrid_star``, is ``pre`` in the first block and ``hybrid`` in the rest, with the
query/key/value norms in every block. DeepNorm's alpha = (2L)^(1/4) and its init scale
beta = (8L)^(-1/4) for L decoder blocks are the decoder-only values of torchscale, whose
``residual_connection`` computes residual * alpha + F(x).) A norm a block's placement does not
use (hybrid's attention N_in) is set to None, so it has no parameters and no state-dict key. The
blocks are transformers' own decoder layers whose ``forward`` is replaced by the one above:
attention (RoPE, KV cache, masks) and the MLP are still transformers' modules, called with
exactly the arguments transformers passes to the layer. The stock layer's signature is
bound once, so the argument names that differ between transformers versions (``cache`` /
``past_key_values``) pass through unchanged.

The query/key norm (HybridNorm: query/key/value norm) is a registry norm over one head's width,
applied to every head of the query and key (and value) projections' outputs (before RoPE),
through forward hooks on those projections so that transformers' attention code runs unchanged.

Copied into every checkpoint beside the modeling file: relative imports only.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch import nn
from transformers.models.gpt2.modeling_gpt2 import GPT2Block
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

PLACEMENTS = ("pre", "post", "peri", "mix", "hybrid", "hybrid_star", "deepnorm")
HYBRID_PLACEMENTS = ("hybrid", "hybrid_star")
"""The placements whose attention has per-head query/key/value norms (HybridNorm, HybridNorm*)."""
NORM_SCALINGS = ("none", "lns")
MIX_LN_FRACTION = 0.25
"""Mix-LN's share of Post-LN blocks: the paper's alpha = 0.25 (first floor(alpha * L) blocks)."""


def post_ln_blocks(placement: str, n_blocks: int, mix_ln_fraction: float) -> int:
    """How many leading blocks use Post-LN: all for post, floor(fraction * L) for mix, else none."""
    if placement == "post":
        return n_blocks
    if placement == "mix":
        return math.floor(mix_ln_fraction * n_blocks)
    return 0


def deepnorm_alpha(n_blocks: int) -> float:
    """DeepNorm's residual weight for a decoder-only model of ``n_blocks`` blocks: (2L)^(1/4)."""
    return (2.0 * n_blocks) ** 0.25


def deepnorm_beta(n_blocks: int) -> float:
    """DeepNorm's init scale for a decoder-only model of ``n_blocks`` blocks: (8L)^(-1/4)."""
    return (8.0 * n_blocks) ** -0.25


def block_placements(placement: str, n_blocks: int, mix_ln_fraction: float) -> list[str]:
    """The placement of each block: pre, post, peri, hybrid or deepnorm (mix resolved to its
    post/pre split, hybrid_star to pre in the first block and hybrid in the rest)."""
    if placement in ("hybrid", "deepnorm"):
        return [placement] * n_blocks
    if placement == "hybrid_star":
        return ["pre"] + ["hybrid"] * (n_blocks - 1)
    n_post = post_ln_blocks(placement, n_blocks, mix_ln_fraction)
    rest = "peri" if placement == "peri" else "pre"
    return ["post"] * n_post + [rest] * (n_blocks - n_post)


def norm_output_scale(norm_scaling: str, block_index: int) -> float:
    """s for block ``block_index`` (0-based): 1/sqrt(depth) under LayerNorm Scaling, else 1."""
    return 1.0 / math.sqrt(block_index + 1) if norm_scaling == "lns" else 1.0


class _PlacedBlock:
    """The placement-aware forward shared by both families' decoder blocks.

    A family supplies its norm attribute names (``NORM_NAMES``: per sub-layer, input norm and
    Peri-LN output norm), the stock layer class it extends (``STOCK``), and how to call its
    attention on the bound arguments (``_attend``), and which weights a placement initializes
    scaled (``init_scales``: module name in the block, factor, and part: None for the whole
    weight and bias, i for the i-th third of a fused query/key/value projection's outputs).
    """

    STOCK: type[nn.Module]
    NORM_NAMES: tuple[tuple[str, str], tuple[str, str]]
    _SIGNATURE: inspect.Signature
    placement: str = "pre"
    norm_scale: float = 1.0
    residual_scale: float = 1.0
    """DeepNorm's alpha: the weight of the residual in ``deepnorm`` blocks (1 elsewhere)."""

    @classmethod
    def adopt(cls, block: nn.Module, placement: str, norm_scale: float, residual_scale: float = 1.0) -> None:
        """Turn a stock decoder layer into this class in place.

        The layer keeps its transformers-built (and initialized) attention and MLP; only the
        forward changes, so parameter names and module lists stay stock.
        """
        if not isinstance(block, cls.STOCK):
            raise TypeError(f"{type(block).__name__} is not a {cls.STOCK.__name__}")
        block.__class__ = cls
        block.placement = placement
        block.norm_scale = norm_scale
        block.residual_scale = residual_scale

    def _sublayer_arguments(self, hidden_states, args, kwargs) -> dict:
        bound = self._SIGNATURE.bind(self, hidden_states, *args, **kwargs).arguments
        extra = {}
        for name, parameter in self._SIGNATURE.parameters.items():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                extra = bound.pop(name, {})
        bound.pop("self")
        bound.pop("hidden_states")
        return {**bound, **extra}

    def _scaled(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        y = norm(x)
        return y if self.norm_scale == 1.0 else y * self.norm_scale

    def _residual(self, x: torch.Tensor, sublayer: Callable, norm_names: tuple[str, str]) -> torch.Tensor:
        norm_in = getattr(self, norm_names[0])
        if self.placement == "pre":
            return x + sublayer(self._scaled(norm_in, x))
        if self.placement == "post":
            return self._scaled(norm_in, x + sublayer(x))
        if self.placement == "deepnorm":
            return self._scaled(norm_in, self.residual_scale * x + sublayer(x))
        if self.placement == "hybrid":
            if norm_in is None:  # attention: its query/key/value norms are inside the sub-layer
                return x + sublayer(x)
            normed = self._scaled(norm_in, x)  # FFN: the residual is taken after the norm
            return normed + sublayer(normed)
        return x + self._scaled(getattr(self, norm_names[1]), sublayer(self._scaled(norm_in, x)))

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        arguments = self._sublayer_arguments(hidden_states, args, kwargs)
        attention_norms, mlp_norms = self.NORM_NAMES
        hidden_states = self._residual(hidden_states, lambda h: self._attend(h, arguments), attention_norms)
        return self._residual(hidden_states, self.mlp, mlp_norms)


class NormLlamaDecoderLayer(_PlacedBlock, LlamaDecoderLayer):
    """``LlamaDecoderLayer`` with the norm placement of ``norm_blocks``."""

    STOCK = LlamaDecoderLayer
    NORM_NAMES = (("input_layernorm", "attn_output_layernorm"), ("post_attention_layernorm", "mlp_output_layernorm"))
    _SIGNATURE = inspect.signature(LlamaDecoderLayer.forward)

    def _attend(self, hidden_states: torch.Tensor, arguments: dict) -> torch.Tensor:
        return self.self_attn(hidden_states=hidden_states, **arguments)[0]

    @classmethod
    def init_scales(cls, placement: str, n_blocks: int, beta: float) -> list[tuple[str, float, int | None]]:
        """(module, factor, part) whose init ``placement`` multiplies (see ``_PlacedBlock``)."""
        if placement == "deepnorm":
            names = ("self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
            return [(name, beta, None) for name in names]
        if placement in HYBRID_PLACEMENTS:
            return [(name, 1 / math.sqrt(2 * n_blocks), None) for name in ("self_attn.o_proj", "mlp.down_proj")]
        return []


class NormGPT2Block(_PlacedBlock, GPT2Block):
    """``GPT2Block`` (self-attention only) with the norm placement of ``norm_blocks``."""

    STOCK = GPT2Block
    NORM_NAMES = (("ln_1", "ln_attn_out"), ("ln_2", "ln_mlp_out"))
    _SIGNATURE = inspect.signature(GPT2Block.forward)

    def _attend(self, hidden_states: torch.Tensor, arguments: dict) -> torch.Tensor:
        if arguments.pop("encoder_hidden_states", None) is not None:
            raise ValueError("encoder_hidden_states: these GPT-2 blocks have no cross-attention")
        arguments.pop("encoder_attention_mask", None)
        return self.attn(hidden_states, **arguments)[0]

    @classmethod
    def init_scales(cls, placement: str, n_blocks: int, beta: float) -> list[tuple[str, float, int | None]]:
        """(module, factor, part) whose init ``placement`` multiplies (see ``_PlacedBlock``).

        Stock GPT-2 already draws both c_proj with std / sqrt(2L), Megatron's rule, which the
        HybridNorm code uses (nothing to add); DeepNorm's beta replaces that factor (torchscale
        draws the output projections like the others before scaling them by beta)."""
        if placement == "deepnorm":
            undo = math.sqrt(2 * n_blocks)
            return [("attn.c_attn", beta, 2), ("attn.c_proj", beta * undo, None), ("mlp.c_fc", beta, None),
                    ("mlp.c_proj", beta * undo, None)]
        return []


def _per_head(norm: nn.Module, projected: torch.Tensor, head_dim: int) -> torch.Tensor:
    """``norm`` over each head of a (..., heads * head_dim) projection."""
    heads = projected.unflatten(-1, (-1, head_dim))  # (..., heads, head_dim)
    return norm(heads).flatten(-2)


class _ProjectionNormHook:
    """Forward hook on an attention projection that normalizes every head of its output.

    A callable object rather than a closure, so that ``copy.deepcopy`` and pickling of the
    model carry the hook over to the copy's own norms. ``parts`` names the attention's norm
    for each equal slice of the projection's last dimension (None: left as is), e.g.
    ``("q_norm", "k_norm", None)`` for GPT-2's fused query/key/value projection.
    """

    def __init__(self, attention: nn.Module, parts: tuple[str | None, ...], head_dim: int) -> None:
        self.attention = attention
        self.parts = parts
        self.head_dim = head_dim

    def __call__(self, _module: nn.Module, _args: tuple, projected: torch.Tensor) -> torch.Tensor:
        slices = projected.chunk(len(self.parts), dim=-1)
        normed = [
            piece if name is None else _per_head(getattr(self.attention, name), piece, self.head_dim)
            for name, piece in zip(self.parts, slices, strict=True)
        ]
        return normed[0] if len(normed) == 1 else torch.cat(normed, dim=-1)


def attach_qk_norm(
    attention: nn.Module, make_norm: Callable[[], nn.Module], head_dim: int, value: bool = False
) -> None:
    """Give a LlamaAttention or GPT2Attention ``q_norm`` and ``k_norm`` (and with ``value``,
    HybridNorm's ``v_norm``), applied to each head of the query and key (and value) projections'
    outputs (LLaMA: q_proj, k_proj, v_proj; GPT-2: the fused c_attn)."""
    attention.q_norm, attention.k_norm = make_norm(), make_norm()
    if value:
        attention.v_norm = make_norm()
    if hasattr(attention, "c_attn"):
        parts = ("q_norm", "k_norm", "v_norm" if value else None)
        attention.c_attn.register_forward_hook(_ProjectionNormHook(attention, parts, head_dim))
    else:
        attention.q_proj.register_forward_hook(_ProjectionNormHook(attention, ("q_norm",), head_dim))
        attention.k_proj.register_forward_hook(_ProjectionNormHook(attention, ("k_norm",), head_dim))
        if value:
            attention.v_proj.register_forward_hook(_ProjectionNormHook(attention, ("v_norm",), head_dim))
