"""Activation statistics: known values for Gaussian, heavy-tailed and grouped inputs."""

import pytest
import torch

from ibnorm_llm.analysis.activations import activation_stats


def test_gaussian_has_no_excess_kurtosis_and_gaussian_tails():
    x = torch.randn(4096, 64, generator=torch.Generator().manual_seed(0))
    stats = activation_stats(x)
    assert stats["excess_kurtosis"] == pytest.approx(0.0, abs=0.05)
    assert stats["frac_beyond_3std"] == pytest.approx(0.0027, abs=0.0005)
    assert stats["group_scale_avg"] == pytest.approx(1.0, abs=0.02)
    assert stats["group_mean_avg"] == pytest.approx(0.0, abs=0.01)


def test_heavy_tails_raise_kurtosis_and_tail_share():
    t = torch.distributions.StudentT(df=5.0).sample((4096, 64))
    stats = activation_stats(t)
    assert stats["excess_kurtosis"] > 2.0  # theory: 6 / (df - 4) = 6
    assert stats["frac_beyond_3std"] > 0.005


def test_group_statistics_follow_the_groups():
    # Two groups per token: the first centred at 5 with scale 1, the second at -5 with scale 3.
    g = torch.Generator().manual_seed(1)
    x = torch.cat([5 + torch.randn(512, 8, generator=g), -5 + 3 * torch.randn(512, 8, generator=g)], dim=1)
    stats = activation_stats(x, num_groups=2)
    assert stats["group_mean_avg"] == pytest.approx(0.0, abs=0.2)
    assert stats["group_mean_std"] == pytest.approx(5.0, abs=0.3)
    assert stats["group_scale_avg"] == pytest.approx(2.0 * 0.94, rel=0.1)  # std over 8 values is biased low
    one_group = activation_stats(x, num_groups=1)
    assert one_group["group_scale_avg"] > 5.0  # the two groups' offset now counts as spread


def test_constant_activations_have_undefined_tail_statistics():
    stats = activation_stats(torch.full((16, 4), 2.0))
    assert stats["excess_kurtosis"] is None and stats["frac_beyond_3std"] is None
    assert stats["group_scale_avg"] == 0.0


def test_bad_activations_are_clear_errors():
    x = torch.randn(16, 6)
    x[3, 2] = float("nan")
    with pytest.raises(ValueError, match="layer 3 input: .*NaN"):
        activation_stats(x, name="layer 3 input")
    with pytest.raises(ValueError, match="num_groups=4 does not divide the width 6"):
        activation_stats(torch.randn(16, 6), num_groups=4)
