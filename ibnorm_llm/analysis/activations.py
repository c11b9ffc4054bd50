"""Distribution statistics of activations before and after a norm.

Tail statistics are pooled over every value of the sampled tokens (N · d values), because the
claim under test is about the shape of the activation distribution (compression shrinks its
tails), outlier features included. Group statistics describe what the norm sees: each token's
features split into ``num_groups`` equal groups (one group per token for LayerNorm/RMSNorm).
"""

from __future__ import annotations

import torch

TAIL_STDS = 3.0


def activation_stats(x: torch.Tensor, num_groups: int = 1, name: str = "activations") -> dict[str, float | None]:
    """Statistics of ``x`` (N, d):

    - ``excess_kurtosis``: E[(v − m)⁴] / var² − 3 over all values (0 for a Gaussian);
    - ``frac_beyond_3std``: share of values with |v − m| > 3 std (0.0027 for a Gaussian);
    - ``group_mean_avg`` / ``group_mean_std``: average and spread of the per-group means;
    - ``group_scale_avg`` / ``group_scale_std``: average and spread of the per-group standard deviations;
    - ``abs_max``: the largest magnitude.

    Kurtosis and tail share are None (JSON null) for a constant tensor, where they are undefined.
    """
    if x.dim() != 2:
        raise ValueError(f"{name}: expected activations of shape (N, d), got {tuple(x.shape)}")
    if x.shape[1] % num_groups != 0:
        raise ValueError(f"{name}: num_groups={num_groups} does not divide the width {x.shape[1]}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: activations contain NaN or infinite values; the model's forward pass is not finite")
    values = x.to(torch.float64).flatten()
    centred = values - values.mean()
    var = float((centred * centred).mean())
    if var > 0.0:
        kurtosis: float | None = float((centred**4).mean()) / (var * var) - 3.0
        beyond: float | None = float((centred.abs() > TAIL_STDS * var**0.5).double().mean())
    else:
        kurtosis = beyond = None
    groups = x.to(torch.float64).reshape(x.shape[0], num_groups, -1)  # (N, G, d / G)
    group_means = groups.mean(dim=-1)
    group_scales = groups.std(dim=-1, unbiased=False)
    return {
        "excess_kurtosis": kurtosis,
        "frac_beyond_3std": beyond,
        "group_mean_avg": float(group_means.mean()),
        "group_mean_std": float(group_means.std(unbiased=False)),
        "group_scale_avg": float(group_scales.mean()),
        "group_scale_std": float(group_scales.std(unbiased=False)),
        "abs_max": float(values.abs().max()),
    }
