"""Per-group standardization shared by IBNorm and NormalNorm."""

from __future__ import annotations

import torch


def standardize(g: torch.Tensor, how: str, eps: float) -> torch.Tensor:
    """Standardize along the last dim: ``meanvar`` (LayerNorm-style) or ``rms`` (RMSNorm-style)."""
    if how == "meanvar":
        centered = g - g.mean(-1, keepdim=True)
        return centered * torch.rsqrt(centered.pow(2).mean(-1, keepdim=True) + eps)
    return g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + eps)
