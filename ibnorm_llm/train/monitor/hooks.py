"""Forward hooks that feed a :class:`~.tally.Tally` on a monitor step, and nothing else.

``MonitorHooks(model, tally, attention_sequences)`` registers them when entered and removes every
one when left, so the other steps run the model exactly as without monitoring (``hook_count``
before and after is the check). Only forwards inside ``recording()`` are measured: a block
recomputed in the backward (``model.gradient_checkpointing``) is not counted twice.

Where the values come from (names as in ibnorm_llm.analysis.capture):

- every norm (``norm_modules``: block norms in every placement, Peri-LN output norms, the query/key
  norms, the final norm): its input and output;
- every decoder block: its input and output, and the stream between the two sub-layers (the input
  of the MLP's norm under pre/peri/hybrid placement; under post and deepnorm, the attention and MLP
  outputs, which are added to the stream before its norm);
- attention: the query and key projections' outputs (after any query/key norm) and, for LLaMA, the
  rotary embedding the attention receives: the logits are recomputed from them (nGPT: through the
  attention's own ``sphere_qk``, with its softmax scale), so the model's attention implementation
  (SDPA, flash) is left as it is.

An nGPT model has no norms: its blocks' statistics (stream, update ratios, attention) are recorded,
the "mid" stream being the MLP's input.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from ibnorm_llm.analysis.capture import decoder_blocks, model_layout, norm_groups, norm_modules
from ibnorm_llm.norms.saturation import KNEE_SLOPE, has_saturated_range, relative_slope

from .stats import attention_stats, eps_dominated, massive_ratio, mean_share, moments, share_below, square_sum
from .tally import Tally

_RMS_BASED = ("RMSNorm", "SeeDNorm")
"""Norms whose statistic is the mean square (no centring); matched by class name so that stock
transformers norms (LlamaRMSNorm) count too."""


def hook_count(model: nn.Module) -> int:
    """Forward and forward-pre hooks registered anywhere in ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _hidden(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _norm_eps(module: nn.Module) -> float | None:
    eps = getattr(module, "eps", getattr(module, "variance_epsilon", None))
    return float(eps) if isinstance(eps, (int, float)) else None


def _is_centred(module: nn.Module) -> bool:
    return not any(name in type(module).__name__ for name in _RMS_BASED)


def _attention(block: nn.Module) -> nn.Module | None:
    return getattr(block, "self_attn", None) or getattr(block, "attn", None)


class MonitorHooks:
    """The monitor step's hooks on ``model`` (the plain model: no DDP/compile wrapper in the names)."""

    def __init__(self, model: nn.Module, tally: Tally, attention_sequences: int) -> None:
        self.model, self.tally, self.sequences = model, tally, attention_sequences
        self.recording_forward = False
        self.attention_on = False
        self._handles: list = []
        self._key_mask: torch.Tensor | None = None
        self._block: dict[int, dict[str, torch.Tensor]] = {}
        self._attn: dict[int, dict] = {}

    # lifetime ---------------------------------------------------------------------------------
    def __enter__(self) -> MonitorHooks:
        try:
            self._install()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._block.clear()
        self._attn.clear()
        self._key_mask = None

    @contextmanager
    def recording(self, attention: bool = True) -> Iterator[None]:
        """Measure the forwards run inside; ``attention``: also the attention statistics (a (sequences,
        heads, T, T) product per block, over the first ``attention_sequences`` rows of each batch)."""
        self.recording_forward, self.attention_on = True, attention
        try:
            yield
        finally:
            self.recording_forward = self.attention_on = False
            self._block.clear()
            self._attn.clear()

    def _hook(self, module: nn.Module, fn, pre: bool = False, with_kwargs: bool = False) -> None:
        if pre:
            self._handles.append(module.register_forward_pre_hook(fn, with_kwargs=with_kwargs))
        else:
            self._handles.append(module.register_forward_hook(fn))

    def _install(self) -> None:
        model = self.model
        layout = model_layout(model)
        self._hook(model, self._model_inputs, pre=True, with_kwargs=True)
        for name, module in norm_modules(model).items():
            self._hook(module, self._norm_hook(f"monitor/norm/{name}", module))
        for index, block in enumerate(decoder_blocks(model)):
            prefix = f"monitor/block/{index}"
            self._hook(block, self._block_input(index), pre=True, with_kwargs=True)
            self._hook(block, self._block_output(index, prefix))
            placement = getattr(block, "placement", "pre")
            attention = _attention(block)
            if placement == "ngpt":  # no norms: the MLP reads the stream left by the attention step
                self._hook(block.mlp, self._keep(index, "mid", output=False))
            elif placement in ("post", "deepnorm"):
                self._hook(attention, self._keep(index, "attn_out", output=True))
                self._hook(block.mlp, self._keep(index, "mlp_in", output=False, also_output="mlp_out"))
            else:
                names = getattr(block, "NORM_NAMES", None)
                mlp_norm = names[1][0] if names else layout.block_norms[1]
                self._hook(block.get_submodule(mlp_norm), self._keep(index, "mid", output=False))
            if attention is not None:
                self._attention_hooks(index, prefix, attention)

    # inputs of the whole model ----------------------------------------------------------------
    def _model_inputs(self, _module, args, kwargs) -> None:
        if self.recording_forward:
            mask = kwargs.get("attention_mask")
            self._key_mask = mask[: self.sequences] if torch.is_tensor(mask) and mask.dim() == 2 else None

    # norms ------------------------------------------------------------------------------------
    def _norm_hook(self, prefix: str, module: nn.Module):
        groups = norm_groups(module)
        eps = _norm_eps(module)
        centred = _is_centred(module)
        bounded = has_saturated_range(module)

        def hook(_module, args, output) -> None:
            if not self.recording_forward:
                return
            x, y = args[0].detach(), _hidden(output).detach()
            tally = self.tally
            tally.moments(f"{prefix}/in", moments(x))
            tally.maximum(f"{prefix}/in_max", x.abs().max())
            tally.moments(f"{prefix}/out", moments(y))
            tally.share(f"{prefix}/mean_share", mean_share(x, groups))
            if eps is not None:
                tally.share(f"{prefix}/eps_dominated", eps_dominated(x, eps, centred, groups))
            if bounded:
                slope = relative_slope(module, x.reshape(-1, x.shape[-1]))
                tally.share(f"{prefix}/saturated", share_below(slope, KNEE_SLOPE))
        return hook

    # blocks -----------------------------------------------------------------------------------
    def _block_input(self, index: int):
        def hook(_module, args, kwargs) -> None:
            if self.recording_forward:
                self._block.setdefault(index, {})["in"] = (args[0] if args else kwargs["hidden_states"]).detach()
        return hook

    def _keep(self, index: int, key: str, output: bool, also_output: str | None = None):
        def hook(_module, args, out) -> None:
            if not self.recording_forward:
                return
            kept = self._block.setdefault(index, {})
            kept[key] = (_hidden(out) if output else args[0]).detach()
            if also_output:
                kept[also_output] = _hidden(out).detach()
        return hook

    def _block_output(self, index: int, prefix: str):
        def hook(_module, _args, output) -> None:
            if not self.recording_forward:
                return
            kept = self._block.pop(index, {})
            x_out = _hidden(output).detach()
            tally = self.tally
            tally.moments(f"{prefix}/stream", moments(x_out))
            tally.maximum(f"{prefix}/stream_max", x_out.abs().max())
            tally.maximum(f"{prefix}/massive", massive_ratio(x_out))
            x_in = kept.get("in")
            if x_in is None:
                return
            if "mid" in kept:  # pre / peri: the stream after attention is the MLP norm's input
                x_mid = kept["mid"]
                tally.ratio(f"{prefix}/attn_update_ratio", square_sum(x_mid - x_in), square_sum(x_in))
                tally.ratio(f"{prefix}/mlp_update_ratio", square_sum(x_out - x_mid), square_sum(x_mid))
            elif "attn_out" in kept and "mlp_out" in kept:  # post: what each sub-layer adds before its norm
                tally.ratio(f"{prefix}/attn_update_ratio", square_sum(kept["attn_out"]), square_sum(x_in))
                tally.ratio(f"{prefix}/mlp_update_ratio", square_sum(kept["mlp_out"]), square_sum(kept["mlp_in"]))
        return hook

    # attention --------------------------------------------------------------------------------
    def _attention_hooks(self, index: int, prefix: str, attention: nn.Module) -> None:
        def start(_module, _args, kwargs) -> None:
            if self.recording_forward and self.attention_on:
                self._attn[index] = {"rope": kwargs.get("position_embeddings")}

        def keep(key: str):
            def hook(_module, _args, out) -> None:
                if self.recording_forward and self.attention_on and index in self._attn:
                    self._attn[index][key] = out[: self.sequences].detach()
            return hook

        def finish(module, _args, _output) -> None:
            kept = self._attn.pop(index, None)
            if not (self.recording_forward and self.attention_on) or kept is None:
                return
            q, k = self._queries_keys(module, kept)
            mask = self._key_mask
            if mask is not None:
                mask = mask[: q.shape[0]]
            entropy, logit_max = attention_stats(q, k, float(module.scaling), mask)
            self.tally.share(f"{prefix}/attn_entropy", entropy)
            self.tally.maximum(f"{prefix}/attn_logit_max", logit_max)

        self._hook(attention, start, pre=True, with_kwargs=True)
        if hasattr(attention, "c_attn"):  # GPT-2: one fused projection, no rotary embedding
            self._hook(attention.c_attn, keep("qkv"))
        else:
            self._hook(attention.q_proj, keep("q"))
            self._hook(attention.k_proj, keep("k"))
        self._hook(attention, finish)

    @staticmethod
    def _queries_keys(module: nn.Module, kept: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, heads, T, head_dim) queries and (S, kv heads, T, head_dim) keys as the attention uses them."""
        head_dim = module.head_dim
        if "qkv" in kept:
            q, k, _ = kept["qkv"].split(module.split_size, dim=-1)
            return (q.unflatten(-1, (-1, head_dim)).transpose(1, 2), k.unflatten(-1, (-1, head_dim)).transpose(1, 2))
        q = kept["q"].unflatten(-1, (-1, head_dim)).transpose(1, 2)
        k = kept["k"].unflatten(-1, (-1, head_dim)).transpose(1, 2)
        if kept.get("rope") is not None:
            cos, sin = kept["rope"]
            if cos.shape[0] > 1:
                cos, sin = cos[: q.shape[0]], sin[: q.shape[0]]
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if hasattr(module, "sphere_qk"):  # nGPT: unit queries and keys times s_qk, after RoPE
            q, k = module.sphere_qk(q, k)
        return q, k
