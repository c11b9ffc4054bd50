"""Statistics of the parameters: per group (a decoder block, the embeddings, the LM head, the final
norm), the gradient norm before clipping and the update's RMS over the parameters' RMS after the
optimizer step; per norm, the affine gain.

Each rank sums over the elements it holds: under FSDP2 a shard (the tally is then summed over the
ranks), under DDP the whole replicated tensor (not reduced: every rank holds the same values).
"""

from __future__ import annotations

import torch
from torch import nn

from ibnorm_llm.analysis.capture import model_layout

from .tally import Tally

_EMBEDDINGS = ("embed_tokens", "wte", "wpe")


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of an FSDP2 DTensor (no communication); plain tensors as they are."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def group_of(name: str, blocks: str, final_norm: str) -> str:
    """The group of parameter ``name``: ``block_<i>``, ``embed``, ``head``, ``final_norm`` or ``other``."""
    if name.startswith(blocks + "."):
        return f"block_{name[len(blocks) + 1:].split('.')[0]}"
    if name.startswith(final_norm + "."):
        return "final_norm"
    if any(part in _EMBEDDINGS for part in name.split(".")):
        return "embed"
    if name.startswith("lm_head."):
        return "head"
    return "other"


def _groups(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    layout = model_layout(model)
    return [(group_of(name, layout.blocks, layout.final_norm), p) for name, p in model.named_parameters()
            if p.requires_grad]


@torch.no_grad()
def grad_sq_sums(model: nn.Module, tally: Tally) -> None:
    """``monitor/param/<group>/grad_norm``: the L2 norm of the group's gradients (call before clipping)."""
    for group, param in _groups(model):
        if param.grad is not None:
            tally.norm(f"monitor/param/{group}/grad_norm", _local(param.grad).double().pow(2).sum())


@torch.no_grad()
def snapshot(model: nn.Module) -> dict[int, torch.Tensor]:
    """This rank's parameter values before the optimizer step (a copy, taken on monitor steps only)."""
    return {id(p): _local(p).detach().clone() for _, p in _groups(model)}


@torch.no_grad()
def update_stats(model: nn.Module, before: dict[int, torch.Tensor], tally: Tally) -> None:
    """``monitor/param/<group>/update_ratio``: RMS(p_after − p_before) / RMS(p_before) over the group."""
    for group, param in _groups(model):
        old = before.get(id(param))
        if old is not None:
            new = _local(param).detach()
            tally.ratio(f"monitor/param/{group}/update_ratio", (new.double() - old.double()).pow(2).sum(),
                        old.double().pow(2).sum())


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole value of an FSDP2 DTensor (a collective: every rank calls it); plain tensors as they are."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


@torch.no_grad()
def gain_stats(norms: dict[str, nn.Module]) -> dict[str, float]:
    """Per norm with an affine gain: ``gain_mean``, ``gain_rms`` and ``gain_max`` (the largest |gain|);
    DyT and Derf also their scalar ``alpha`` (what sets where they saturate)."""
    record: dict[str, float] = {}
    for name, module in norms.items():
        weight = getattr(module, "weight", None)
        prefix = f"monitor/norm/{name}"
        if isinstance(weight, torch.Tensor) and weight.numel() > 0:  # ZeRO-3 leaves empty partitions
            w = _full(weight.detach()).double()
            values = torch.stack([w.mean(), w.pow(2).mean().sqrt(), w.abs().max()]).tolist()
            record.update(zip((f"{prefix}/gain_mean", f"{prefix}/gain_rms", f"{prefix}/gain_max"), values, strict=True))
        alpha = getattr(module, "alpha", None)
        if isinstance(alpha, torch.Tensor) and alpha.numel() == 1:
            record[f"{prefix}/alpha"] = float(_full(alpha.detach()))
    return record
