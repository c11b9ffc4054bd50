"""A checkpoint's run identity as ``summary.json`` records it, for grouping runs in comparisons."""

from __future__ import annotations

from typing import Any

from ibnorm_llm.checkpoint import CheckpointInfo


def run_fields(info: CheckpointInfo) -> dict[str, Any]:
    """The identity of the run for comparison tables: preset, norm, variant, λ, seed ...

    Norm options other than variant and λ (deviation, num_groups ...) are included only when
    set, so runs that differ in them are never averaged together as seeds.
    """
    if info.config is None:
        return {"run_name": info.path.name, "preset": None, "norm": None, "variant": None, "lam": None, "seed": None}
    norm = info.config.model.norm
    options = {k: v for k, v in norm.options().items() if k not in ("variant", "lam", "impl")}
    fields: dict[str, Any] = {
        "run_name": info.config.run_name,
        "preset": info.config.model.preset,
        "norm": norm.kind,
        "variant": norm.variant,
        "lam": norm.lam,
        "seed": info.config.train.seed,
    }
    if options:
        fields["norm_options"] = options
    return fields
