"""Per-rank pieces of the monitored statistics, reduced over the ranks into one metrics record.

A piece is stored under its metric name with how it is finished:

    moments   [n, Σx, Σx², Σx³, Σx⁴]  ->  <name>_rms and <name>_kurtosis (excess)
    share     [count, total]          ->  count / total
    ratio     [Σa², Σb²]              ->  sqrt(Σa² / Σb²)  (an RMS over an RMS on the same elements)
    norm      [Σg²]                   ->  sqrt(Σg²)
    max       x                       ->  the largest over micro batches and ranks

Pieces of the same name add up over micro batches; over ranks the sums are all-reduced by sum and
the maxima by max: two collectives per monitor step, whatever the number of statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .stats import excess_kurtosis_from_moments, rms_from_moments

Reduce = Callable[[torch.Tensor, str], torch.Tensor]
"""``reduce(tensor, "sum" | "max")``: the tensor reduced over every rank (identity in one process)."""


def no_reduce(tensor: torch.Tensor, _op: str) -> torch.Tensor:
    return tensor


class Tally:
    def __init__(self) -> None:
        self.sums: dict[str, tuple[str, torch.Tensor]] = {}
        self.maxes: dict[str, torch.Tensor] = {}

    def _add(self, kind: str, name: str, value: torch.Tensor) -> None:
        value = value.detach().double().reshape(-1)
        if name in self.sums:
            self.sums[name] = (kind, self.sums[name][1] + value.to(self.sums[name][1].device))
        else:
            self.sums[name] = (kind, value)

    def moments(self, name: str, value: torch.Tensor) -> None:
        self._add("moments", name, value)

    def share(self, name: str, value: torch.Tensor) -> None:
        self._add("share", name, value)

    def ratio(self, name: str, numerator_sq: torch.Tensor, denominator_sq: torch.Tensor) -> None:
        self._add("ratio", name, torch.stack([numerator_sq.double(), denominator_sq.double().to(numerator_sq.device)]))

    def norm(self, name: str, square_sum: torch.Tensor) -> None:
        self._add("norm", name, square_sum)

    def maximum(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().double().reshape(())
        self.maxes[name] = torch.maximum(self.maxes[name], value.to(self.maxes[name].device)) if name in self.maxes else value

    def __len__(self) -> int:
        return len(self.sums) + len(self.maxes)

    def record(self, reduce: Reduce = no_reduce, device: torch.device | None = None) -> dict[str, float | None]:
        """The finished statistics over all ranks; every rank calls it with the same names (every rank
        runs the same hooks on the same modules, so they line up when sorted)."""
        names = sorted(self.sums)
        out: dict[str, float | None] = {}
        if names:
            flat = torch.cat([self.sums[n][1].to(device or self.sums[n][1].device) for n in names])
            values = reduce(flat, "sum").tolist()
            at = 0
            for name in names:
                kind, piece = self.sums[name]
                part = values[at:at + piece.numel()]
                at += piece.numel()
                out.update(_finish(kind, name, part))
        max_names = sorted(self.maxes)
        if max_names:
            stacked = torch.stack([self.maxes[n].to(device or self.maxes[n].device) for n in max_names])
            for name, value in zip(max_names, reduce(stacked, "max").tolist(), strict=True):
                out[name] = value if math.isfinite(value) else None
        return dict(sorted(out.items()))


def _finish(kind: str, name: str, v: list[float]) -> dict[str, float | None]:
    if kind == "moments":
        return {f"{name}_rms": rms_from_moments(v), f"{name}_kurtosis": excess_kurtosis_from_moments(v)}
    if kind == "share":
        return {name: v[0] / v[1] if v[1] > 0 else None}
    if kind == "ratio":
        return {name: math.sqrt(v[0] / v[1]) if v[1] > 0 else None}
    if kind == "norm":
        return {name: math.sqrt(v[0])}
    raise ValueError(f"unknown statistic kind {kind!r} for {name}")
