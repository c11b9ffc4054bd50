"""ibnorm_llm.stats: the test across seeds, the spread over seeds and the verdict wording, on data with
known answers (the t statistics written out here, not taken from the module)."""

import math

import pytest
from scipy import stats as scipy_stats

from ibnorm_llm.stats import describe_difference, seed_test, spread


def test_paired_t_test_known_answer():
    # Differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3; two-sided p with 2 degrees of
    # freedom is 1 - t / sqrt(2 + t^2) = 1 - sqrt(12 / 14).
    baseline = {0: 10.0, 1: 20.0, 2: 30.0}
    arm = {0: 11.0, 1: 22.0, 2: 33.0}
    result = seed_test(arm, baseline)
    assert result.test == "paired" and result.n == 3
    assert result.mean_difference == pytest.approx(2.0) and result.sd_difference == pytest.approx(1.0)
    assert result.t == pytest.approx(2 * math.sqrt(3))
    assert result.p == pytest.approx(1 - math.sqrt(12 / 14))


def test_different_seeds_use_welch_on_all_values():
    arm, baseline = {0: 1.0, 1: 2.0, 5: 4.0}, {0: 0.5, 1: 1.0}
    result = seed_test(arm, baseline)
    # Welch: t = (mean_a - mean_b) / sqrt(var_a / n_a + var_b / n_b) with sample variances.
    mean_a, mean_b = 7 / 3, 0.75
    var_a, var_b = ((1 - mean_a) ** 2 + (2 - mean_a) ** 2 + (4 - mean_a) ** 2) / 2, 0.125
    t = (mean_a - mean_b) / math.sqrt(var_a / 3 + var_b / 2)
    assert result.test == "welch" and result.n == 2 and result.sd_difference is None
    assert result.mean_difference == pytest.approx(mean_a - mean_b) and result.t == pytest.approx(t)
    assert result.p == pytest.approx(scipy_stats.ttest_ind([1, 2, 4], [0.5, 1], equal_var=False).pvalue)


def test_small_or_constant_samples_have_no_p_value():
    single = seed_test({0: 1.0}, {0: 0.5})
    assert single.test is None and single.n == 1 and single.p is None and single.sd_difference is None
    assert seed_test({0: 1.0, 1: 2.0}, {3: 0.5}).test is None  # Welch needs two values a side
    constant = seed_test({0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.5})
    assert constant.test == "paired" and constant.sd_difference == 0.0 and constant.p is None
    with pytest.raises(ValueError, match="a side has no values"):
        seed_test({0: 1.0}, {})


def test_spread_is_mean_and_sample_sd():
    s = spread([1.0, 2.0, 3.0])
    assert (s.mean, s.sd, s.n) == (2.0, 1.0, 3)
    assert spread([4.0]).sd is None


def test_verdict_words_follow_the_test_and_the_direction():
    shifted = seed_test({0: 2.5, 1: 2.71, 2: 2.89}, {0: 3.0, 1: 3.2, 2: 3.4})
    assert describe_difference("ib", "rms", shifted, 0.2, quantity="nats", lower_is_better=True).startswith(
        "**ib vs rms: supported**: ib is better (-0.5000 nats, paired t-test")
    # The same shift in a score (higher is better) is a worse result.
    assert "ib is worse" in describe_difference("ib", "rms", shifted, 0.2, quantity="points", lower_is_better=False)
    single = seed_test({0: 2.5}, {0: 3.0})
    assert "not supported either way" in describe_difference("ib", "rms", single, 0.0, quantity="nats",
                                                             lower_is_better=True)
