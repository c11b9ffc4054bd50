"""Analysis of one model on one batch: per-block IB values and per-norm activation statistics.

``analyze_model`` returns the full JSON-able report (`ibnorm-llm analyze`); ``layer_report``
flattens it into scalars for the trainer's periodic logging (``analysis.every``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from torch import nn

from ibnorm_llm.analysis.activations import activation_stats
from ibnorm_llm.analysis.capture import Batch, capture
from ibnorm_llm.analysis.ib import check_layers, ib_values, target_gram
from ibnorm_llm.analysis.renyi import matrix_entropy
from ibnorm_llm.config import AnalysisConfig, to_dict
from ibnorm_llm.norms.saturation import has_saturated_range, saturated_share


def analyze_model(
    model: nn.Module,
    batch: Batch,
    cfg: AnalysisConfig | None = None,
    layers: Sequence[int] | None = None,
    with_norms: bool = True,
) -> dict:
    """IB values per decoder block and activation statistics per norm, as a JSON-able dict.

    ``batch`` is a (B, T) tensor of held-out token ids or a mapping with ``input_ids`` (and
    optional ``attention_mask``/``labels``); it must hold at least ``cfg.n_tokens`` predictable
    tokens. ``layers`` restricts the IB values to some blocks (0-based); norms of all blocks
    are reported.
    """
    cfg = AnalysisConfig() if cfg is None else cfg
    started = time.perf_counter()
    captured = capture(model, batch, cfg.n_tokens, seed=cfg.seed, with_norms=with_norms)
    n_blocks = len(captured.states) - 1
    chosen = check_layers(layers, n_blocks)
    captured_s = time.perf_counter() - started

    y_gram = target_gram(captured.targets, captured.target_embeddings, cfg.target, cfg.width_rule)
    per_layer = ib_values(
        captured.states, y_gram, beta=cfg.beta, alpha=cfg.alpha, width_rule=cfg.width_rule, layers=chosen,
        chance=cfg.chance, seed=cfg.seed,
    )
    ib_s = time.perf_counter() - started - captured_s

    norms = []
    for name, inputs in captured.norm_inputs.items():
        groups = captured.norm_groups[name]
        module = model.get_submodule(name)
        norms.append({
            "name": name,
            "block": captured.norm_blocks[name],
            "num_groups": groups,
            "before": activation_stats(inputs, groups, name=f"{name} input"),
            "after": activation_stats(captured.norm_outputs[name], groups, name=f"{name} output"),
            # the norm sees rows of its own width (one head's features for a query/key norm)
            "saturated_share": saturated_share(module, inputs.reshape(-1, module.dim))
            if has_saturated_range(module) else None,
        })
    return {
        "analysis": to_dict(cfg),
        "n_tokens": cfg.n_tokens,
        "n_blocks": n_blocks,
        "target_entropy": matrix_entropy(y_gram, cfg.alpha),
        "layers": [result.to_dict() for result in per_layer],
        "norms": norms,
        "seconds": {"forward": captured_s, "ib": ib_s, "total": time.perf_counter() - started},
    }


def layer_report(model: nn.Module, batch: Batch, cfg: AnalysisConfig | None = None) -> dict[str, float]:
    """Scalars for periodic logging during training (metrics.jsonl / W&B), keyed ``analysis/...``:

    ``analysis/ib/<block>``, ``analysis/i_target/<block>``, ``analysis/i_previous/<block>`` and,
    per norm (HF module name), ``analysis/kurtosis_before|after/<name>`` and
    ``analysis/beyond3_before|after/<name>`` and, for norms with a saturated range (IBNorm, DyT, Derf),
    ``analysis/saturated/<name>`` (share of the input past the knee). Undefined statistics (constant activations) are
    left out. Runs one no-grad forward in eval mode and restores the model's mode; pass the
    unwrapped model. Cost: one forward plus about 3 eigendecompositions of (n_tokens, n_tokens)
    per block.
    """
    report = analyze_model(model, batch, cfg)
    scalars: dict[str, float] = {}
    for layer in report["layers"]:
        block = layer["layer"]
        scalars[f"analysis/ib/{block}"] = layer["ib_value"]
        scalars[f"analysis/i_target/{block}"] = layer["i_target"]
        scalars[f"analysis/i_previous/{block}"] = layer["i_previous"]
    for norm in report["norms"]:
        for when in ("before", "after"):
            stats = norm[when]
            for key, short in (("excess_kurtosis", "kurtosis"), ("frac_beyond_3std", "beyond3")):
                if stats[key] is not None:
                    scalars[f"analysis/{short}_{when}/{norm['name']}"] = stats[key]
        if norm["saturated_share"] is not None:
            scalars[f"analysis/saturated/{norm['name']}"] = norm["saturated_share"]
    scalars["analysis/seconds"] = report["seconds"]["total"]
    return scalars
