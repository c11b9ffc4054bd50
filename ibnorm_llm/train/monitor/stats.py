"""The monitored statistics as functions of tensors. Each returns the additive pieces (sums and
counts, in float64) or the maxima a :class:`~.tally.Tally` combines over micro batches and ranks,
so that a statistic over several ranks equals the statistic over their union (the massive-
activation ratio, a median, is the one exception: its maximum over micro batches and ranks).
"""

from __future__ import annotations

import math

import torch

from ibnorm_llm.data import IGNORE_INDEX


def moments(x: torch.Tensor) -> torch.Tensor:
    """``[n, Σx, Σx², Σx³, Σx⁴]`` over every element of ``x`` (float64)."""
    v = x.detach().double().flatten()
    v2 = v * v
    return torch.stack([torch.tensor(float(v.numel()), dtype=torch.float64, device=v.device),
                        v.sum(), v2.sum(), (v2 * v).sum(), (v2 * v2).sum()])


def rms_from_moments(m: list[float]) -> float | None:
    """sqrt(Σx² / n)."""
    return math.sqrt(m[2] / m[0]) if m[0] > 0 else None


def excess_kurtosis_from_moments(m: list[float]) -> float | None:
    """E[(x − μ)⁴] / var² − 3 from raw power sums (0 for a Gaussian); None for a constant tensor."""
    n, s1, s2, s3, s4 = m
    if n <= 0:
        return None
    mu = s1 / n
    var = s2 / n - mu * mu
    if not var > 0:
        return None
    m4 = s4 / n - 4 * mu * s3 / n + 6 * mu * mu * s2 / n - 3 * mu**4
    return m4 / (var * var) - 3.0


def groups_of(x: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(rows, G, width / G) float64 view of a norm's input: each row of the last dimension split into
    the ``num_groups`` groups the norm normalizes separately."""
    v = x.detach().double()
    return v.reshape(-1, num_groups, v.shape[-1] // num_groups)


def mean_share(x: torch.Tensor, num_groups: int = 1) -> torch.Tensor:
    """``[Σ over groups of mean² / mean-square, groups]``: the share of each group's second moment
    that is its mean, i.e. what centring removes (LayerNorm, IBNorm); groups of zeros count as 0."""
    g = groups_of(x, num_groups)
    mean, square = g.mean(-1), g.pow(2).mean(-1)
    share = torch.where(square > 0, mean * mean / square.clamp_min(torch.finfo(torch.float64).tiny),
                        torch.zeros_like(square))
    return torch.stack([share.sum(), torch.tensor(float(share.numel()), dtype=torch.float64, device=share.device)])


def eps_dominated(x: torch.Tensor, eps: float, centred: bool, num_groups: int = 1) -> torch.Tensor:
    """``[groups whose statistic is below eps, groups]``: the statistic is the variance for a
    centring norm, the mean square for an RMS norm; below ``eps``, eps sets the output's scale."""
    g = groups_of(x, num_groups)
    stat = g.var(-1, unbiased=False) if centred else g.pow(2).mean(-1)
    return torch.stack([(stat < eps).sum().double(),
                        torch.tensor(float(stat.numel()), dtype=torch.float64, device=stat.device)])


def share_below(values: torch.Tensor, threshold: float) -> torch.Tensor:
    """``[elements below threshold, elements]``."""
    return torch.stack([(values < threshold).sum().double(),
                        torch.tensor(float(values.numel()), dtype=torch.float64, device=values.device)])


def square_sum(x: torch.Tensor) -> torch.Tensor:
    """Σx² (float64): the numerator or denominator of an RMS ratio."""
    return x.detach().double().pow(2).sum()


def massive_ratio(x: torch.Tensor) -> torch.Tensor:
    """max |x| / median |x| over every element ("massive activations", Sun et al., arXiv 2402.17762)."""
    a = x.detach().float().abs().flatten()
    return (a.max() / a.median().clamp_min(torch.finfo(torch.float32).tiny)).double()


def attention_stats(q: torch.Tensor, k: torch.Tensor, scaling: float,
                    key_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal self-attention of queries ``q`` (S, H, T, d) over keys ``k`` (S, H_kv, T, d), as the
    model computes it: ``[Σ entropy over (sequence, head, query), count]`` of the softmax rows in
    nats, and the largest pre-softmax logit ``scaling * q·k`` among the attended keys.

    ``key_mask`` (S, T), 1 = a real token: padded keys are not attended, padded queries not counted.
    """
    q, k = q.detach().float(), k.detach().float()
    if k.shape[1] != q.shape[1]:  # grouped-query attention: each key head serves several query heads
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    logits = torch.matmul(q, k.transpose(-1, -2)) * scaling  # (S, H, T, T)
    T = q.shape[2]
    allowed = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()[None, None]
    valid_query = torch.ones(q.shape[0], 1, T, dtype=torch.bool, device=q.device)
    if key_mask is not None:
        real = key_mask.bool()
        allowed = allowed & real[:, None, None, :]
        valid_query = real[:, None, :]
    masked = logits.masked_fill(~allowed, float("-inf"))
    logp = torch.log_softmax(masked, dim=-1)
    p = logp.exp()
    entropy = -(p * logp.masked_fill(~allowed, 0.0)).sum(-1)  # (S, H, T)
    rows = valid_query.expand_as(entropy)
    logit_max = logits.masked_fill(~allowed, float("-inf")).max()
    return (torch.stack([entropy[rows].double().sum(), rows.sum().double()]), logit_max.double())


def z_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over target positions of logsumexp(logits)² (PaLM's z-loss), differentiable; the logits
    at position t predict labels[t + 1], as the model's own loss shifts them."""
    lse = torch.logsumexp(logits[:, :-1].float(), dim=-1)
    targets = labels[:, 1:] != IGNORE_INDEX
    return (lse.pow(2) * targets).sum() / targets.sum().clamp_min(1)


def output_stats(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[Σ logsumexp² over target positions, target positions]`` and the largest logit there."""
    with torch.no_grad():
        shifted = logits[:, :-1].detach().float()
        targets = labels[:, 1:] != IGNORE_INDEX
        lse = torch.logsumexp(shifted, dim=-1)
        total = torch.stack([(lse.double().pow(2) * targets).sum(), targets.sum().double()])
        top = shifted.amax(-1).masked_fill(~targets, float("-inf")).max().double()
    return total, top
