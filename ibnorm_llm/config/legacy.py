"""Reading run configs saved by earlier versions: each norm spec as it was meant when it was written."""

from __future__ import annotations

from ibnorm_llm.norms import with_legacy_options


def legacy_norm_options(tree: dict) -> dict:
    """A saved run config's tree with every norm spec read as it was written (``with_legacy_options``):
    a checkpoint saved before IBNorm's ``lam_role`` existed keeps the reading it was trained with."""
    model = tree.get("model")
    if not isinstance(model, dict):
        return tree
    model = dict(model)
    for key in ("norm", "final_norm", "qk_norm"):
        if isinstance(model.get(key), dict):
            model[key] = with_legacy_options(model[key])
    if isinstance(model.get("norm_overrides"), list):
        model["norm_overrides"] = [
            {**o, "norm": with_legacy_options(o["norm"])} if isinstance(o, dict) and isinstance(o.get("norm"), dict)
            else o for o in model["norm_overrides"]
        ]
    return {**tree, "model": model}
