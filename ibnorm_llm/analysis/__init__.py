"""Information-bottleneck analysis: matrix-based Rényi entropy and mutual information,
per-layer IB values and per-norm activation statistics of causal LMs.

    from ibnorm_llm.analysis import mutual_information, layer_report
    mutual_information(x, y)                   # bits, x (N, dx), y (N, dy)
    batch = gather_tokens(val_batches, cfg.analysis.n_tokens)
    layer_report(model, batch, cfg.analysis)   # {"analysis/ib/0": ..., ...}
"""

from ibnorm_llm.analysis.activations import activation_stats
from ibnorm_llm.analysis.capture import gather_tokens
from ibnorm_llm.analysis.ib import LayerIB, ib_values, target_gram
from ibnorm_llm.analysis.renyi import (
    DEFAULT_WIDTH_RULE,
    WIDTH_RULES,
    joint_entropy,
    kernel_width,
    mutual_information,
    renyi_entropy,
)
from ibnorm_llm.analysis.report import analyze_model, layer_report

__all__ = [
    "DEFAULT_WIDTH_RULE",
    "WIDTH_RULES",
    "LayerIB",
    "activation_stats",
    "analyze_model",
    "gather_tokens",
    "ib_values",
    "joint_entropy",
    "kernel_width",
    "layer_report",
    "mutual_information",
    "renyi_entropy",
    "target_gram",
]
