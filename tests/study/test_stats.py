"""The paired test across seeds and the spread over seeds, on data with known answers."""

import math

import pytest

from ibnorm_llm.study.stats import paired_test, spread


def test_paired_t_test_known_answer():
    # Differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3; two-sided p with 2 degrees of
    # freedom is 1 - t / sqrt(2 + t^2) = 1 - sqrt(12 / 14).
    baseline = {0: 10.0, 1: 20.0, 2: 30.0}
    arm = {0: 11.0, 1: 22.0, 2: 33.0}
    result = paired_test(arm, baseline)
    assert result.n == 3 and result.mean_difference == pytest.approx(2.0) and result.sd_difference == pytest.approx(1.0)
    assert result.t == pytest.approx(2 * math.sqrt(3))
    assert result.p == pytest.approx(1 - math.sqrt(12 / 14))


def test_paired_test_pairs_by_seed_and_handles_small_samples():
    # Only the seeds both sides have are paired; an unpaired test on these values would differ.
    assert paired_test({0: 1.0, 1: 2.0, 5: 100.0}, {0: 0.5, 1: 1.0}).mean_difference == pytest.approx(0.75)
    single = paired_test({0: 1.0}, {0: 0.5})
    assert single.n == 1 and single.p is None and single.sd_difference is None
    constant = paired_test({0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.5})
    assert constant.sd_difference == 0.0 and constant.p is None
    with pytest.raises(ValueError, match="share no seed"):
        paired_test({0: 1.0}, {1: 1.0})


def test_spread_is_mean_and_sample_sd():
    s = spread([1.0, 2.0, 3.0])
    assert (s.mean, s.sd, s.n) == (2.0, 1.0, 3)
    assert spread([4.0]).sd is None
