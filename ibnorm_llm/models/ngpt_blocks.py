"""nGPT, the normalized Transformer (Loshchilov et al., arXiv 2410.01131), on LLaMA's modules.

Every hidden vector and every weight vector along the model width d lives on the unit sphere;
there are no norm layers. With Norm(x) = x / ||x||_2 over the last dimension, block l updates the
residual stream h (the reading of NVIDIA/ngpt model.py, ``Block.forward`` with use_nGPT=1):

    h_A = Attention(h)                                 q, k: RoPE, then s_qk * Norm per head,
                                                       softmax(q k^T * sqrt(d_k)) v
    h   = Norm(h + |alpha_A| * (Norm(h_A) - h))        (model.py: A_norm + lr * (B_norm - A_norm);
                                                        h is already unit-norm, its Norm is a no-op)
    u, v = s_u * sqrt(d) * (W_up h),  s_v * sqrt(d) * (W_gate h)
    h_M = W_down (u * SiLU(v))
    h   = Norm(h + |alpha_M| * (Norm(h_M) - h))

and the logits are s_z * (W_head h). Each of alpha_A, alpha_M (width d), s_qk (one value per
query/key feature, heads x head_dim = d), s_u, s_v (width d_ff) and s_z (vocabulary) is stored as
a parameter initialized to a constant ``scaling`` and used as ``parameter * (init / scaling)``, so
that its effective value starts at ``init`` while Adam moves it at the pace of ``scaling`` (the
official code's ``*_init_value`` / ``*_init_scaling`` pairs; the values, and the one place where the
official code and the paper differ, are in docs/baselines.md). The weight matrices are made unit
vectors along d at initialization and again after every optimizer step (``normalize_matrices``,
NVIDIA/ngpt train.py ``normalize_matrices``); the trainer calls the model's ``post_optimizer_step``.

The blocks, attention, MLP and LM head are transformers' own modules whose class is switched in
place (as norm_blocks does for the placements), so parameter names stay stock and the new
vectors are added beside them: ``model.layers[i].attn_alpha``, ``.mlp_alpha``,
``.self_attn.s_qk``, ``.mlp.s_u``, ``.mlp.s_v`` and ``lm_head.s_z``. The block norms are removed;
``model.norm`` (which LlamaModel always calls) becomes an identity.

Copied into every checkpoint beside the modeling file: relative imports only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn
from transformers.models.llama.modeling_llama import (
    ALL_ATTENTION_FUNCTIONS,
    LlamaAttention,
    LlamaMLP,
    apply_rotary_pos_emb,
    eager_attention_forward,
)

from .norm_blocks import NormLlamaDecoderLayer

NGPT_SCALES = ("attn_alpha", "mlp_alpha", "s_qk", "s_u", "s_v", "s_z")
"""The learnable vectors nGPT adds, by the name their parameters carry."""
ALPHA_INIT = 0.05
"""alpha_A and alpha_M at initialization (model.py: attn_alpha_init_value = mlp_alpha_init_value = 0.05)."""


def official_scales(d_model: int) -> dict[str, dict[str, float]]:
    """The official ``init`` (effective value at initialization) and ``scaling`` (the stored
    parameter's initial value) of every nGPT vector at width ``d_model``; base_scale = 1/sqrt(d)
    (NVIDIA/ngpt train.py: ``base_scale = 1.0 / n_embd ** 0.5`` when use_nGPT=1)."""
    base = 1.0 / math.sqrt(d_model)
    return {
        "attn_alpha": {"init": ALPHA_INIT, "scaling": base},
        "mlp_alpha": {"init": ALPHA_INIT, "scaling": base},
        "s_qk": {"init": 1.0, "scaling": base},
        "s_u": {"init": 1.0, "scaling": 1.0},
        "s_v": {"init": 1.0, "scaling": 1.0},
        "s_z": {"init": 1.0, "scaling": base},
    }


def check_scales(scales: object) -> dict[str, dict[str, float]]:
    """``scales`` (a model config's ``ngpt``) checked: every vector with a finite init and a scaling > 0."""
    if not isinstance(scales, dict) or set(scales) != set(NGPT_SCALES):
        raise ValueError(f"ngpt={scales!r}: expected None or a mapping with exactly the keys {', '.join(NGPT_SCALES)}")
    for name, spec in scales.items():
        ok = isinstance(spec, dict) and set(spec) == {"init", "scaling"} and all(
            isinstance(spec[k], (int, float)) and not isinstance(spec[k], bool) and math.isfinite(spec[k])
            for k in spec
        )
        if not ok or spec["scaling"] <= 0:
            raise ValueError(f"ngpt[{name!r}]={spec!r}: expected {{'init': a finite number, 'scaling': a number > 0}}")
    return scales


def unit(x: torch.Tensor) -> torch.Tensor:
    """x / ||x||_2 over the last dimension (model.py ``justnorm``: no epsilon), the norm taken in at
    least fp32."""
    wide = torch.promote_types(x.dtype, torch.float32)
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=wide).to(x.dtype)


def _add_scale(module: nn.Module, name: str, size: int, spec: dict[str, float], like: torch.Tensor) -> None:
    module.register_parameter(name, nn.Parameter(torch.full((size,), float(spec["scaling"]), dtype=torch.float32,
                                                            device=like.device)))
    module.ngpt_scales = {**getattr(module, "ngpt_scales", {}), name: (float(spec["init"]), float(spec["scaling"]))}


def effective(module: nn.Module, name: str) -> torch.Tensor:
    """The vector ``name`` as the forward uses it: parameter * (init / scaling)."""
    init, scaling = module.ngpt_scales[name]
    return getattr(module, name) * (init / scaling)


def reset_scales(module: nn.Module) -> None:
    """Every nGPT vector of ``module`` (not its children) back to its stored initial value."""
    with torch.no_grad():
        for name, (_init, scaling) in getattr(module, "ngpt_scales", {}).items():
            param = getattr(module, name)
            if param.device.type != "meta" and not getattr(param, "_is_hf_initialized", False):
                param.fill_(scaling)


class NGPTAttention(LlamaAttention):
    """LLaMA attention with nGPT's queries and keys: RoPE, then ``s_qk * Norm`` per head, and the
    softmax scale sqrt(d_k) (``scaling``) in place of 1/sqrt(d_k)."""

    def sphere_qk(self, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, heads, T, head_dim) queries and keys after RoPE -> as the attention scores use them."""
        s_qk = effective(self, "s_qk").view(-1, 1, self.head_dim).to(query.dtype)  # (heads, 1, head_dim)
        return s_qk * unit(query), s_qk * unit(key)

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, cache=None, **kwargs):
        cache = kwargs.pop("past_key_values", cache)  # the name before transformers 5.x
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        cos, sin = position_embeddings
        query, key = self.sphere_qk(*apply_rotary_pos_emb(query, key, cos, sin))
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx, kwargs=kwargs)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        output, weights = attend(
            self, query, key, value, attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout, scaling=self.scaling, **kwargs,
        )
        return self.o_proj(output.reshape(*input_shape, -1).contiguous()), weights


class NGPTMLP(LlamaMLP):
    """SwiGLU with nGPT's scaled gate and value: W_down(u * SiLU(v)), u = s_u sqrt(d) W_up h and
    v = s_v sqrt(d) W_gate h (model.py scales both halves of c_fc's output by suv * sqrt(n_embd))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        root_d = math.sqrt(self.hidden_size)
        u = self.up_proj(x) * (effective(self, "s_u") * root_d).to(x.dtype)
        v = self.gate_proj(x) * (effective(self, "s_v") * root_d).to(x.dtype)
        return self.down_proj(u * self.act_fn(v))


class NGPTLMHead(nn.Linear):
    """The LM head with nGPT's logit scale: s_z * (W_head h)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        return logits * effective(self, "s_z").to(logits.dtype)


class NGPTDecoderLayer(NormLlamaDecoderLayer):
    """A LLaMA decoder layer with nGPT's update h <- Norm(h + |alpha| * (Norm(F(h)) - h)) per
    sub-layer, no norm modules (``NORM_NAMES`` is empty; the monitor and analysis see none)."""

    NORM_NAMES = ()
    placement = "ngpt"

    def _step(self, h: torch.Tensor, update: torch.Tensor, alpha: str) -> torch.Tensor:
        lr = effective(self, alpha).abs()
        h_unit = unit(h)
        return unit(h_unit + lr.to(h.dtype) * (unit(update) - h_unit))

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        arguments = self._sublayer_arguments(hidden_states, args, kwargs)
        h = self._step(hidden_states, self._attend(hidden_states, arguments), "attn_alpha")
        return self._step(h, self.mlp(h), "mlp_alpha")


def unit_matrices(model: nn.Module) -> Iterator[tuple[torch.Tensor, int]]:
    """Every weight nGPT keeps on the sphere with the dimension normalized: the one of width d_model
    (train.py ``normalize_matrices``: embeddings, LM head, q/k/v and the MLP's input projections
    along dim 1; the attention and MLP output projections along dim 0). A tied LM head once."""
    seen: set[int] = set()
    for module in model.modules():
        dim = getattr(module, "ngpt_unit_dim", None)
        if dim is not None and id(module.weight) not in seen:
            seen.add(id(module.weight))
            yield module.weight, dim


@torch.no_grad()
def normalize_matrices(model: nn.Module) -> None:
    """Each weight of ``unit_matrices`` divided by its L2 norm along its d_model dimension, computed
    in fp32 and written back in the weight's dtype (train.py ``justnorm(x, idim)``)."""
    for weight, dim in unit_matrices(model):
        if weight.device.type == "meta":
            continue
        wide = weight.to(torch.promote_types(weight.dtype, torch.float32))
        weight.copy_(wide / torch.linalg.vector_norm(wide, dim=dim, keepdim=True))


def make_ngpt(model: nn.Module, scales: dict[str, dict[str, float]]) -> None:
    """Turn a freshly built ``LlamaForCausalLM`` (subclass) into nGPT in place (see the module docstring)."""
    config, base = model.config, model.model
    d = config.hidden_size
    like = base.embed_tokens.weight
    for block in base.layers:
        NGPTDecoderLayer.adopt(block, "ngpt", 1.0)
        del block.input_layernorm, block.post_attention_layernorm
        _add_scale(block, "attn_alpha", d, scales["attn_alpha"], like)
        _add_scale(block, "mlp_alpha", d, scales["mlp_alpha"], like)
        attention, mlp = block.self_attn, block.mlp
        attention.__class__ = NGPTAttention
        attention.scaling = attention.head_dim ** 0.5  # model.py: softmax_scale = sqrt_head_dim under nGPT
        _add_scale(attention, "s_qk", config.num_attention_heads * attention.head_dim, scales["s_qk"], like)
        mlp.__class__ = NGPTMLP
        _add_scale(mlp, "s_u", config.intermediate_size, scales["s_u"], like)
        _add_scale(mlp, "s_v", config.intermediate_size, scales["s_v"], like)
        for linear in (attention.q_proj, attention.k_proj, attention.v_proj, mlp.up_proj, mlp.gate_proj):
            linear.ngpt_unit_dim = 1
        for linear in (attention.o_proj, mlp.down_proj):
            linear.ngpt_unit_dim = 0
    base.norm = nn.Identity()
    model.lm_head.__class__ = NGPTLMHead
    _add_scale(model.lm_head, "s_z", config.vocab_size, scales["s_z"], like)
    model.lm_head.ngpt_unit_dim = 1
    embed = base.embed_tokens
    embed.ngpt_unit_dim = 1
    if embed.padding_idx is not None:
        # The stock init leaves the padding row zero, which has no direction: the official model has
        # no padding index; here the row is drawn like the others and kept on the sphere.
        row, embed.padding_idx = embed.padding_idx, None
        if like.device.type != "meta":
            with torch.no_grad():
                embed.weight[row].normal_(mean=0.0, std=config.initializer_range)
    normalize_matrices(model)
    model._no_split_modules = {NGPTDecoderLayer.__name__}
