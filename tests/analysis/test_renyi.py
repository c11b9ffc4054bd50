"""Matrix-based Rényi entropy and mutual information against properties with known answers."""

import math

import pytest
import torch

from ibnorm_llm.analysis.renyi import (
    WIDTH_RULES,
    effective_dimension,
    gaussian_gram,
    joint_entropy,
    kernel_width,
    label_gram,
    matrix_entropy,
    mutual_information,
    renyi_entropy,
    squared_distances,
)

TOL = 1e-9


def gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("rule", WIDTH_RULES)
@pytest.mark.parametrize("d", [1, 2, 16])
def test_entropy_within_zero_and_log2_n(rule, d):
    x = gaussian(256, d, seed=d)
    entropy = renyi_entropy(x, width_rule=rule)
    assert -TOL <= entropy <= math.log2(256) + TOL
    assert entropy > 0.01  # distinct samples carry information


@pytest.mark.parametrize("rule", WIDTH_RULES)
def test_entropy_of_identical_samples_is_zero(rule):
    x = torch.full((64, 5), 3.7)
    assert renyi_entropy(x, width_rule=rule) == pytest.approx(0.0, abs=1e-9)
    assert renyi_entropy(x, sigma=0.5) == pytest.approx(0.0, abs=1e-9)


def test_entropy_reaches_log2_n_for_a_very_narrow_kernel():
    x = gaussian(128, 3, seed=1)
    assert renyi_entropy(x, sigma=1e-4) == pytest.approx(math.log2(128), abs=1e-6)


def test_label_entropy_is_renyi_entropy_of_label_frequencies():
    labels = torch.tensor([0] * 32 + [1] * 16 + [2] * 16)
    probs = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    alpha = 1.01
    expected = math.log2(float((probs**alpha).sum())) / (1 - alpha)
    assert matrix_entropy(label_gram(labels), alpha) == pytest.approx(expected, abs=1e-9)


def test_permuting_samples_jointly_changes_nothing():
    x, noise = gaussian(300, 3, seed=2), gaussian(300, 3, seed=3)
    y = torch.tanh(x) + 0.3 * noise
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(4))
    assert renyi_entropy(x[perm]) == pytest.approx(renyi_entropy(x), abs=1e-9)
    assert joint_entropy(x[perm], y[perm]) == pytest.approx(joint_entropy(x, y), abs=1e-9)
    assert mutual_information(x[perm], y[perm]) == pytest.approx(mutual_information(x, y), abs=1e-9)


@pytest.mark.parametrize("rule", WIDTH_RULES)
def test_mutual_information_is_symmetric_and_bounded(rule):
    x = gaussian(300, 4, seed=5)
    y = x[:, :2] ** 2 + 0.5 * gaussian(300, 2, seed=6)
    i_xy = mutual_information(x, y, width_rule=rule)
    i_yx = mutual_information(y, x, width_rule=rule)
    assert i_xy == pytest.approx(i_yx, abs=1e-9)
    bound = min(renyi_entropy(x, width_rule=rule), renyi_entropy(y, width_rule=rule))
    assert -TOL <= i_xy <= bound + TOL
    assert i_xy > 0.0


def test_mutual_information_bounded_with_explicit_widths():
    x, y = gaussian(200, 3, seed=7), gaussian(200, 6, seed=8)
    for sigma in (0.1, 1.0, (0.5, 3.0), 50.0):
        info = mutual_information(x, y, sigma=sigma)
        sx, sy = (sigma, sigma) if not isinstance(sigma, tuple) else sigma
        bound = min(renyi_entropy(x, sigma=sx), renyi_entropy(y, sigma=sy))
        assert -TOL <= info <= bound + TOL


def test_dependent_pair_has_at_least_three_times_the_information_of_an_independent_pair():
    # The low-dimensional check: d = 2, N = 512, default width rule.
    x = gaussian(512, 2, seed=9)
    noisy_copy = x + 0.1 * gaussian(512, 2, seed=10)
    independent = gaussian(512, 2, seed=11)
    dependent_info = mutual_information(x, noisy_copy)
    independent_info = mutual_information(x, independent)
    assert dependent_info >= 3 * independent_info
    assert dependent_info > 0.1


@pytest.mark.parametrize("rule", WIDTH_RULES)
@pytest.mark.parametrize("scale", [1e-3, 7.0, 1e3])
def test_rescaling_leaves_entropy_and_information_unchanged(rule, scale):
    x = gaussian(256, 8, seed=12)
    y = x + gaussian(256, 8, seed=13)
    assert renyi_entropy(scale * x, width_rule=rule) == pytest.approx(renyi_entropy(x, width_rule=rule), abs=1e-7)
    assert mutual_information(scale * x, y, width_rule=rule) == pytest.approx(
        mutual_information(x, y, width_rule=rule), abs=1e-7
    )


def test_width_rules_scale_with_the_data():
    x = gaussian(256, 64, seed=14)
    median = kernel_width(x, "median")
    # The default widens the median distance by d_eff^(1/3); isotropic samples have d_eff near d.
    assert kernel_width(x, "median_scaled") == pytest.approx(median * effective_dimension(x) ** (1 / 3))
    assert 30 < effective_dimension(x) < 64
    assert effective_dimension(torch.outer(torch.arange(50.0), torch.ones(7))) == pytest.approx(1.0)
    # Median pairwise distance of isotropic Gaussians is about sqrt(2 d).
    assert median == pytest.approx(math.sqrt(2 * 64), rel=0.1)


def test_gram_is_trace_normalized_and_symmetric():
    gram = gaussian_gram(gaussian(50, 3, seed=15))
    assert gram.dtype == torch.float64
    assert float(gram.trace()) == pytest.approx(1.0)
    assert torch.equal(gram, gram.T)


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match="at least 4"):
        renyi_entropy(torch.randn(3, 2))
    with pytest.raises(ValueError, match="NaN or infinite.*row 5"):
        x = torch.randn(20, 3)
        x[5, 1] = float("nan")
        renyi_entropy(x)
    with pytest.raises(ValueError, match=r"shape \(N, d\)"):
        renyi_entropy(torch.randn(20))
    with pytest.raises(ValueError, match="same N samples"):
        mutual_information(torch.randn(20, 2), torch.randn(21, 2))
    with pytest.raises(ValueError, match="sigma=-1"):
        renyi_entropy(torch.randn(20, 2), sigma=-1.0)
    with pytest.raises(ValueError, match="alpha=1"):
        renyi_entropy(torch.randn(20, 2), alpha=1)
    with pytest.raises(ValueError, match="unknown width_rule 'scott'"):
        renyi_entropy(torch.randn(20, 2), width_rule="scott")
    with pytest.raises(TypeError, match="floating-point"):
        renyi_entropy(torch.ones(20, 2, dtype=torch.long))


def test_duplicate_samples_have_exactly_zero_distance():
    row = torch.tensor([[1e3 + 0.1, -7.3, 0.3]], dtype=torch.float64)
    x = torch.cat([row.repeat(5, 1), row + 1.0])
    dist = squared_distances(x)
    assert torch.count_nonzero(dist[:5, :5]) == 0
    assert float(dist[0, 5]) == pytest.approx(3.0)
