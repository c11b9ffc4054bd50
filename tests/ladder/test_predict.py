"""What fitted laws predict, on laws written out by hand: the compute-optimal path against a brute-force
minimum, a crossover where the two laws' losses are equal, none where one law is always lower, bootstrap
intervals that hold the true crossing, and the held-out check catching a largest size that breaks the law."""

from __future__ import annotations

import numpy as np
import pytest

from ibnorm_llm.ladder.fit import ScalingLaw
from ibnorm_llm.ladder.predict import compute_optimal, crossing, crossover, held_out, held_out_sentence, predict_pair

# The arm has the lower irreducible loss E but pays more per missing parameter (A): worse when small,
# better when large, so the two compute-optimal curves cross once.
BASE = (1.9, 300.0, 0.34, 400.0, 0.28)
ARM = (1.8, 600.0, 0.34, 400.0, 0.28)


def law(params, samples=None) -> ScalingLaw:
    rows = np.array([params] * 20) if samples is None else np.asarray(samples)
    return ScalingLaw(*params, n_points=20, samples=rows)


def brute_force_optimum(params, compute):
    """min over N of L(N, C / 6N) on a fine log grid: the path without the closed form."""
    E, A, alpha, B, beta = params
    n = np.geomspace(1e2, 1e14, 200_001)
    loss = E + A / n**alpha + B / (compute / (6 * n)) ** beta
    return n[np.argmin(loss)], loss.min()


@pytest.mark.parametrize("compute", [1e15, 1e19, 1e23])
def test_compute_optimal_path_is_the_minimum_over_model_size(compute):
    n, d, loss = compute_optimal(BASE, compute)
    n_brute, loss_brute = brute_force_optimum(BASE, compute)
    assert float(n * d * 6) == pytest.approx(compute)
    assert float(n) == pytest.approx(n_brute, rel=2e-3) and float(loss) == pytest.approx(loss_brute, rel=1e-9)


def test_a_law_that_does_not_fall_with_size_has_no_path():
    assert np.isnan(compute_optimal((1.0, 10.0, -0.1, 10.0, 0.3), 1e18)[2])


def test_crossing_is_where_the_compute_optimal_losses_meet():
    found = crossing(ARM, BASE, 1e12, 1e26)
    assert found is not None and found.direction == "overtakes"
    at = compute_optimal(ARM, found.compute)[2] - compute_optimal(BASE, found.compute)[2]
    assert abs(float(at)) < 1e-9
    # Worse below the crossing, better above it.
    assert compute_optimal(ARM, found.compute / 10)[2] > compute_optimal(BASE, found.compute / 10)[2]
    assert compute_optimal(ARM, found.compute * 10)[2] < compute_optimal(BASE, found.compute * 10)[2]
    assert float(found.n_params) == pytest.approx(float(compute_optimal(ARM, found.compute)[0]))
    # Swapping the two: the baseline falls behind at the same compute.
    back = crossing(BASE, ARM, 1e12, 1e26)
    assert back.direction == "falls behind" and back.compute == pytest.approx(found.compute)


def test_no_crossover_when_one_law_is_lower_everywhere_or_the_range_stops_short():
    worse = (2.0, *BASE[1:])
    assert crossing(worse, BASE, 1e12, 1e26) is None
    where = crossing(ARM, BASE, 1e12, 1e26).compute
    result = crossover(law(ARM), law(BASE), 1e12, where / 100)
    assert result.estimate is None and result.share == 0.0 and result.compute_interval is None


def test_bootstrap_interval_of_the_crossing_holds_the_truth():
    rng = np.random.default_rng(0)
    # Resamples whose E wobbles by 0.005 around each law's: their crossings spread around the true one.
    arm_rows = [(ARM[0] + 0.005 * rng.standard_normal(), *ARM[1:]) for _ in range(100)]
    base_rows = [(BASE[0] + 0.005 * rng.standard_normal(), *BASE[1:]) for _ in range(100)]
    result = crossover(law(ARM, arm_rows), law(BASE, base_rows), 1e10, 1e30)
    truth = crossing(ARM, BASE, 1e10, 1e30).compute
    assert result.estimate.compute == pytest.approx(truth)
    low, high = result.compute_interval
    assert low < truth < high and high / low > 1.5  # a real interval, not a point
    assert result.share > 0.9
    n_low, n_high = result.n_interval
    assert n_low < result.estimate.n_params < n_high


def test_predicted_difference_to_the_baseline_pairs_the_resamples():
    rng = np.random.default_rng(1)
    shifts = 0.01 * rng.standard_normal(50)
    # The same shift in both laws' resample i: the difference is exact although each loss is uncertain.
    arm_rows = [(ARM[0] + s, *ARM[1:]) for s in shifts]
    base_rows = [(BASE[0] + s, *BASE[1:]) for s in shifts]
    p = predict_pair(law(ARM, arm_rows), law(BASE, base_rows), 1e9, 2e10)
    expected = (ARM[0] + ARM[1] / 1e9**ARM[2]) - (BASE[0] + BASE[1] / 1e9**BASE[2])
    assert p.difference == pytest.approx(expected)
    assert p.difference_interval == pytest.approx((expected, expected))
    assert p.interval[1] - p.interval[0] > 0.02


def ladder_points(params, sizes, ratios, top_factor=1.0, noise=0.0, seeds=(0, 1, 2)):
    rng = np.random.default_rng(2)
    E, A, alpha, B, beta = params
    points = []
    for i, N in enumerate(sizes):
        for ratio in ratios:
            for seed in seeds:
                loss = (E + A / N**alpha + B / (ratio * N) ** beta) * np.exp(noise * rng.standard_normal())
                if i == len(sizes) - 1:
                    loss *= top_factor
                points.append({"N": N, "D": ratio * N, "loss": loss, "seed": seed, "size": f"s{i}",
                               "tokens_per_param": ratio})
    return points


def test_held_out_check_passes_on_a_law_and_catches_a_size_that_breaks_it():
    sizes, ratios = np.geomspace(1e6, 1e8, 5), (5, 10, 20)
    good = held_out(ladder_points(BASE, sizes, ratios, noise=0.002), n_bootstrap=50)
    assert good.size == "s4" and len(good.points) == 3
    assert all(abs(p.relative_error) < 0.01 for p in good.points)
    assert "The extrapolation misses" not in held_out_sentence("arm", good)
    # The largest size 5 % worse than the law: refitted without it, the law cannot know, and the check says so.
    bad = held_out(ladder_points(BASE, sizes, ratios, top_factor=1.05, noise=0.002), n_bootstrap=50)
    assert bad.inside == 0 and all(p.relative_error == pytest.approx(0.0476, abs=0.01) for p in bad.points)
    sentence = held_out_sentence("arm", bad)
    assert "The extrapolation misses" in sentence and "did worse than its law predicted" in sentence


def test_held_out_check_without_enough_points_says_why():
    check = held_out(ladder_points(BASE, np.geomspace(1e6, 1e7, 3), (5, 10), seeds=(0,)), n_bootstrap=10)
    assert check.points == () and "4 points cannot fix" in check.problem
    assert "no held-out check" in held_out_sentence("arm", check)
