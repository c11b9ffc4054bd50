"""The one precision rule every norm follows: statistics in at least fp32."""

from __future__ import annotations

import torch


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for half-precision inputs; fp32/fp64 inputs keep their own (gradcheck runs in fp64)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def upcast(x: torch.Tensor) -> torch.Tensor:
    return x.to(stats_dtype(x.dtype))
