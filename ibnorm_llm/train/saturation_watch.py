"""At every held-out evaluation: the share of each bounded norm's input past its knee, and a warning
when a layer is binarizing.

A layer with more than ``BINARIZING_SHARE`` (90 %) of its elements past the knee passes on little
more than their signs (ibnorm_llm.norms.saturation defines "past the knee"). The shares are
logged as ``saturated/<module name>`` in the evaluation's metrics record. Hooks exist only while
the evaluation runs, so training steps pay nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ibnorm_llm.norms.saturation import BINARIZING_SHARE, KNEE_SLOPE, has_saturated_range, relative_slope


def _bounded_norms(model: nn.Module) -> dict[str, nn.Module]:
    """Every norm module with a saturated range, by name."""
    return {name: module for name, module in model.named_modules() if has_saturated_range(module)}


@contextmanager
def saturation_watch(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Yields ``{module name: [saturated elements, elements]}`` (float64 tensors), filled by the
    forwards run inside the block; the hooks are removed when it ends."""
    norms = _bounded_norms(model)
    # Every rank holds every name, evaluated batches or not, so the cross-rank sum lines up.
    counts = {name: torch.zeros(2, dtype=torch.float64) for name in norms}
    handles = []

    def hook(name: str):
        def record(module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            slope = relative_slope(module, x.reshape(-1, x.shape[-1]))
            tally = torch.stack([(slope < KNEE_SLOPE).sum().double(), torch.tensor(float(slope.numel()),
                                 dtype=torch.float64, device=slope.device)])
            counts[name] = counts[name].to(tally.device) + tally
        return record

    for name, module in norms.items():
        handles.append(module.register_forward_pre_hook(hook(name)))
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def saturation_record(counts: dict[str, torch.Tensor], reduce) -> dict[str, float]:
    """``{saturated/<name>: share}``; ``reduce`` sums a tensor over the ranks (every rank calls this)."""
    record = {}
    for name in sorted(counts):
        saturated, total = reduce(counts[name]).tolist()
        record[f"saturated/{name}"] = saturated / max(total, 1.0)
    return record


def binarizing_warnings(record: dict[str, float], step: int) -> list[str]:
    """One warning per layer with more than BINARIZING_SHARE of its elements past the knee."""
    return [
        f"warning: step {step}: {key.removeprefix('saturated/')} has {share:.0%} of its input past the knee "
        f"(compression slope < {KNEE_SLOPE}); above {BINARIZING_SHARE:.0%} the layer passes on little more than "
        "the signs of its input (docs/norms.md, 'Which IBNorm?')"
        for key, share in record.items() if key.startswith("saturated/") and share > BINARIZING_SHARE
    ]
