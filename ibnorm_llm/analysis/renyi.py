"""Matrix-based Rényi α-entropy and mutual information (Giraldo, Rao & Príncipe, 2015).

For N samples X (N, d), a Gaussian Gram matrix ``K_ij = exp(-||x_i - x_j||² / (2σ²))`` is
normalized to ``A_ij = K_ij / (N · sqrt(K_ii K_jj))`` (trace 1, eigenvalues in [0, 1]) and

    S_α(A)      = log2(Σ_k λ_k(A)^α) / (1 − α)                 (bits)
    S_α(A, B)   = S_α(A ∘ B / tr(A ∘ B))                        (Hadamard product)
    I_α(A; B)   = S_α(A) + S_α(B) − S_α(A, B)

Bounds that hold for any kernel width: 0 ≤ S ≤ log2 N and 0 ≤ I ≤ min(S(A), S(B)).
Note that I(X; X) is not S(X) here: A ∘ A is the Gram matrix of a kernel √2 narrower.

Kernel width. ``sigma`` sets σ explicitly; otherwise a width rule derives it from the data:

- ``median_scaled`` (default): σ = median pairwise distance × d_eff^(1/3), where d_eff is the
  participation ratio (Σλ)²/Σλ² of the sample covariance spectrum (1 for data on a line, ≈ d
  for isotropic data). Pairwise distances concentrate in high dimension, so a kernel as wide
  as the median distance sees almost the same matrix for dependent and independent pairs;
  widening it with the effective dimension keeps the dependent/independent gap (measured
  table in docs/analysis.md). Uses the effective rather than the nominal dimension so that
  low-rank activations in a wide model are not over-smoothed.
- ``median``: σ = median pairwise distance (the common heuristic; collapses the gap at high d).
- ``silverman``: σ = s · (4 / ((d + 2) N))^(1/(d+4)), s the root-mean per-feature standard
  deviation (Silverman's rule as used for DNN information planes; saturates at log2 N at high d).

All three are scale-equivariant, so rescaling X leaves every estimate unchanged. When the
rule gives σ = 0 (more than half the samples coincide) the kernel is its σ → 0 limit, the
identity kernel K_ij = [x_i = x_j]. Computation is in float64 with a symmetric eigensolver.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

WidthRule = Literal["median_scaled", "median", "silverman"]
WIDTH_RULES: tuple[str, ...] = ("median_scaled", "median", "silverman")
DEFAULT_WIDTH_RULE: WidthRule = "median_scaled"
DEFAULT_ALPHA = 1.01
MIN_SAMPLES = 4
"""Fewer samples than this give no usable distance statistics for a width rule."""

Sigma = float | None


def check_samples(x: torch.Tensor, name: str = "X") -> torch.Tensor:
    """Validate an (N, d) sample matrix and return it as float64."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, d), got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, d) (samples x features), got shape {tuple(x.shape)}")
    n = x.shape[0]
    if n < MIN_SAMPLES:
        raise ValueError(f"{name} has N={n} samples; the estimator needs at least {MIN_SAMPLES} (sample more tokens)")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {tuple(x.shape)})")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad_rows = (~finite).any(dim=1).nonzero().flatten()
        raise ValueError(
            f"{name} contains NaN or infinite values in {bad_rows.numel()} of {n} samples "
            f"(first at row {int(bad_rows[0])}); the activations are not finite, check the model or input"
        )
    return x.detach().to(torch.float64)


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances (N, N) of float64 samples, exactly 0 on the diagonal."""
    x = x - x.mean(dim=0)  # centring keeps the Gram trick accurate for data far from the origin
    sq_norms = (x * x).sum(dim=1)
    dist = sq_norms[:, None] + sq_norms[None, :] - 2.0 * (x @ x.T)
    # The Gram trick leaves round-off of order eps * |x|^2 where the true distance is 0
    # (duplicate samples); zero it so duplicates stay exact duplicates for the width rules.
    round_off = 1e-12 * float(sq_norms.max()) if sq_norms.numel() else 0.0
    dist[dist <= round_off] = 0.0
    dist.fill_diagonal_(0.0)
    return dist


def effective_dimension(x: torch.Tensor) -> float:
    """Participation ratio (Σλ)²/Σλ² of the sample covariance spectrum; 1 when all samples coincide."""
    x = x.to(torch.float64)
    x = x - x.mean(dim=0)
    # The nonzero covariance eigenvalues are those of the smaller of X^T X (d, d) and X X^T (N, N).
    small = x.T @ x if x.shape[1] <= x.shape[0] else x @ x.T
    eig = torch.linalg.eigvalsh(small).clamp_min(0.0)
    total = float(eig.sum())
    if total == 0.0:
        return 1.0
    return total**2 / float((eig * eig).sum())


def _median_distance(dist: torch.Tensor) -> float:
    n = dist.shape[0]
    rows, cols = torch.triu_indices(n, n, offset=1, device=dist.device)
    return float(dist[rows, cols].sqrt().median())


def kernel_width(x: torch.Tensor, width_rule: WidthRule = DEFAULT_WIDTH_RULE, dist: torch.Tensor | None = None) -> float:
    """The Gaussian kernel width σ for samples ``x`` (N, d) under ``width_rule`` (see module doc)."""
    x = check_samples(x)
    n, d = x.shape
    if width_rule == "median_scaled":
        dist = squared_distances(x) if dist is None else dist
        return _median_distance(dist) * effective_dimension(x) ** (1.0 / 3.0)
    if width_rule == "median":
        dist = squared_distances(x) if dist is None else dist
        return _median_distance(dist)
    if width_rule == "silverman":
        spread = float(x.var(dim=0).mean().sqrt())
        return spread * (4.0 / ((d + 2) * n)) ** (1.0 / (d + 4))
    raise ValueError(f"unknown width_rule {width_rule!r}; choose one of {', '.join(WIDTH_RULES)}")


def gaussian_gram(
    x: torch.Tensor, sigma: Sigma = None, width_rule: WidthRule = DEFAULT_WIDTH_RULE
) -> torch.Tensor:
    """Normalized Gaussian Gram matrix A (N, N), float64, trace 1, of samples ``x`` (N, d)."""
    x = check_samples(x)
    dist = squared_distances(x)
    if sigma is None:
        sigma = kernel_width(x, width_rule, dist=dist)
    elif not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma={sigma!r}: the kernel width must be a finite number > 0 (or None for the width rule)")
    if sigma == 0.0:
        gram = (dist == 0.0).to(torch.float64)
    else:
        gram = torch.exp(dist / (-2.0 * sigma * sigma))
    # K_ii = 1 for a Gaussian kernel, so K_ij / (N sqrt(K_ii K_jj)) is K / N.
    return gram / gram.shape[0]


def label_gram(labels: torch.Tensor) -> torch.Tensor:
    """Normalized Gram matrix (N, N) of categorical labels under the identity kernel [y_i = y_j].

    This is the Gaussian kernel on one-hot vectors in its σ → 0 limit; its entropy is the
    Rényi entropy of the empirical label distribution.
    """
    if labels.dim() != 1:
        raise ValueError(f"labels must be a 1-D tensor of class ids, got shape {tuple(labels.shape)}")
    if labels.shape[0] < MIN_SAMPLES:
        raise ValueError(f"labels has N={labels.shape[0]} samples; the estimator needs at least {MIN_SAMPLES}")
    same = (labels[:, None] == labels[None, :]).to(torch.float64)
    return same / labels.shape[0]


def matrix_entropy(gram: torch.Tensor, alpha: float = DEFAULT_ALPHA) -> float:
    """S_α of a normalized PSD Gram matrix (trace 1), in bits."""
    _check_alpha(alpha)
    gram = gram.to(torch.float64)
    gram = gram / gram.trace()
    eig = torch.linalg.eigvalsh(gram).clamp_min(0.0)  # round-off makes tiny eigenvalues negative
    return math.log2(float((eig**alpha).sum())) / (1.0 - alpha)


def joint_matrix_entropy(gram_a: torch.Tensor, gram_b: torch.Tensor, alpha: float = DEFAULT_ALPHA) -> float:
    """S_α(A, B): the entropy of the trace-normalized Hadamard product A ∘ B."""
    if gram_a.shape != gram_b.shape:
        raise ValueError(
            f"joint entropy needs the same samples on both sides: Gram shapes {tuple(gram_a.shape)} "
            f"and {tuple(gram_b.shape)} differ"
        )
    return matrix_entropy(gram_a * gram_b, alpha)


def mutual_information_from_grams(
    gram_a: torch.Tensor,
    gram_b: torch.Tensor,
    alpha: float = DEFAULT_ALPHA,
    entropy_a: float | None = None,
    entropy_b: float | None = None,
) -> float:
    """I_α(A; B) = S(A) + S(B) − S(A, B); within [0, min(S(A), S(B))] up to round-off.

    Pass already computed marginal entropies to skip their eigendecompositions.
    """
    s_a = matrix_entropy(gram_a, alpha) if entropy_a is None else entropy_a
    s_b = matrix_entropy(gram_b, alpha) if entropy_b is None else entropy_b
    return s_a + s_b - joint_matrix_entropy(gram_a, gram_b, alpha)


def renyi_entropy(
    x: torch.Tensor, alpha: float = DEFAULT_ALPHA, sigma: Sigma = None, width_rule: WidthRule = DEFAULT_WIDTH_RULE
) -> float:
    """Matrix-based Rényi α-entropy S_α(X) in bits of samples ``x`` (N, d); 0 ≤ S ≤ log2 N."""
    return matrix_entropy(gaussian_gram(x, sigma, width_rule), alpha)


def _pair_sigmas(sigma: Sigma | tuple[Sigma, Sigma]) -> tuple[Sigma, Sigma]:
    if isinstance(sigma, tuple):
        if len(sigma) != 2:
            raise ValueError(f"sigma={sigma!r}: give one width or a pair (sigma_x, sigma_y)")
        return sigma
    return sigma, sigma


def _check_same_n(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() >= 1 and y.dim() >= 1 and x.shape[0] != y.shape[0]:
        raise ValueError(f"X and Y must hold the same N samples (paired rows), got N={x.shape[0]} and N={y.shape[0]}")


def joint_entropy(
    x: torch.Tensor,
    y: torch.Tensor,
    alpha: float = DEFAULT_ALPHA,
    sigma: Sigma | tuple[Sigma, Sigma] = None,
    width_rule: WidthRule = DEFAULT_WIDTH_RULE,
) -> float:
    """Joint entropy S_α(X, Y) of paired samples x (N, dx) and y (N, dy).

    ``sigma`` is one width for both, a pair ``(sigma_x, sigma_y)``, or None for the width rule
    applied to each side separately.
    """
    _check_same_n(x, y)
    sigma_x, sigma_y = _pair_sigmas(sigma)
    return joint_matrix_entropy(gaussian_gram(x, sigma_x, width_rule), gaussian_gram(y, sigma_y, width_rule), alpha)


def mutual_information(
    x: torch.Tensor,
    y: torch.Tensor,
    alpha: float = DEFAULT_ALPHA,
    sigma: Sigma | tuple[Sigma, Sigma] = None,
    width_rule: WidthRule = DEFAULT_WIDTH_RULE,
) -> float:
    """I_α(X; Y) = S(X) + S(Y) − S(X, Y) in bits of paired samples x (N, dx) and y (N, dy).

    Symmetric in X and Y, invariant to permuting the rows of both jointly, and within
    [0, min(S(X), S(Y))]. ``sigma`` as in :func:`joint_entropy`.
    """
    _check_same_n(x, y)
    sigma_x, sigma_y = _pair_sigmas(sigma)
    return mutual_information_from_grams(
        gaussian_gram(x, sigma_x, width_rule), gaussian_gram(y, sigma_y, width_rule), alpha
    )


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0 and alpha != 1):
        raise ValueError(f"alpha={alpha!r}: the Rényi order must be > 0 and != 1 (1.01 approximates Shannon)")
