"""Published initialization rules that depend on the model's size, as data (no torch).

``dyt_alpha_init(width)``: the DyT paper's alpha_0 for LLaMA by model width (Zhu, Chen, He, LeCun, Liu,
"Transformers without Normalization", arXiv 2503.10622, Section 7, Tables 11 and 12). The paper finds
that width sets alpha_0 and depth does not (Table 12: the same values at depths 8 to 64), that wider
models need smaller values, and that the DyT layers of the attention blocks need a larger alpha_0 than
the others (the FFN blocks and the final layer before the LM head). The official LLaMA commands
(jiachenzhu/DyT ``other_tasks/LLaMA/README.md``) pass the Table 11 values as ``attn_alpha_init_value``
/ ``ffn_alpha_init_value`` / ``dec_alpha_init_value``.
"""

from __future__ import annotations

import math

DYT_ALPHA_INIT_BY_WIDTH: dict[int, tuple[float, float]] = {
    1024: (1.0, 1.0),  # Table 12, every depth
    2048: (1.0, 0.5),  # Table 12, every depth
    4096: (0.8, 0.2),  # Table 12, every depth; Table 11, LLaMA 7B
    5120: (0.6, 0.15),  # Table 11, LLaMA 13B
    8192: (0.2, 0.05),  # Table 12, every depth; Table 11, LLaMA 34B and 70B (printed as width 8196)
}
"""Width -> (alpha_0 of the attention norms, alpha_0 of the MLP and final norms), as published."""


def dyt_alpha_init(width: int) -> tuple[float, float]:
    """(attention, other) alpha_0 for a model of this width: the published row of the widest listed width
    that is not wider than the model; below 1024, the narrowest published width, the 1024 row.

    The paper lists only the widths above; between two of them we keep the narrower one's values (a step
    rule: alpha_0 only falls as the width grows, and only once the model reaches a width where the paper
    measured it falling). Our presets (128 to 2048) fall on 1024's row or below it, except llama-1b (2048).
    """
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
        raise ValueError(f"width={width!r}: must be a positive integer (the model's d_model)")
    listed = [w for w in sorted(DYT_ALPHA_INIT_BY_WIDTH) if w <= width]
    return DYT_ALPHA_INIT_BY_WIDTH[listed[-1] if listed else min(DYT_ALPHA_INIT_BY_WIDTH)]


def sqrt_d(width: int) -> float:
    """sqrt(d_model): the initial embedding scale of the DyT and Derf LM codes (``shared_scale_init_value``)."""
    return math.sqrt(width)
