"""Each monitored statistic against a hand computation on a fixed tensor (ibnorm_llm.train.monitor)."""

from __future__ import annotations

import math

import pytest
import torch

from ibnorm_llm.norms import DyT, RMSNorm
from ibnorm_llm.norms.saturation import KNEE_SLOPE, relative_slope
from ibnorm_llm.train.monitor import SpikeDetector, Tally, gain_stats, moved_most, output_stats, z_loss
from ibnorm_llm.train.monitor.params import group_of
from ibnorm_llm.train.monitor.stats import (
    attention_stats,
    eps_dominated,
    excess_kurtosis_from_moments,
    massive_ratio,
    mean_share,
    moments,
    rms_from_moments,
    share_below,
)


def test_rms_and_excess_kurtosis_of_1_2_3_4():
    m = moments(torch.tensor([[1.0, 2.0], [3.0, 4.0]])).tolist()
    assert m == [4.0, 10.0, 30.0, 100.0, 354.0]
    assert rms_from_moments(m) == pytest.approx(math.sqrt(7.5))
    # mean 2.5, variance 1.25, E[(x - 2.5)^4] = (2 * 1.5^4 + 2 * 0.5^4) / 4 = 2.5625
    assert excess_kurtosis_from_moments(m) == pytest.approx(2.5625 / 1.25**2 - 3)
    assert excess_kurtosis_from_moments(moments(torch.full((5,), 3.0)).tolist()) is None  # constant: undefined


def test_kurtosis_pools_micro_batches_exactly():
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0)) ** 3
    one, two = Tally(), Tally()
    one.moments("a", moments(x))
    two.moments("a", moments(x[:20]))
    two.moments("a", moments(x[20:]))
    v = x.double().flatten()
    expected = ((v - v.mean()) ** 4).mean() / v.var(unbiased=False) ** 2 - 3
    assert one.record()["a_kurtosis"] == pytest.approx(float(expected), rel=1e-9)
    assert two.record() == pytest.approx(one.record(), rel=1e-9)


def test_mean_share_per_group():
    # one group: [2, 0] has mean 1 and mean square 2
    assert mean_share(torch.tensor([[2.0, 0.0]])).tolist() == [0.5, 1.0]
    # two groups of [1, 1, 3, -3]: [1, 1] is all mean (1), [3, -3] none (0); a zero group counts 0
    assert mean_share(torch.tensor([[1.0, 1.0, 3.0, -3.0]]), num_groups=2).tolist() == [1.0, 2.0]
    assert mean_share(torch.zeros(1, 4)).tolist() == [0.0, 1.0]


def test_eps_dominated_counts_groups_whose_statistic_is_below_eps():
    x = torch.tensor([[5.0, 5.0], [1e-4, -1e-4], [1.0, -1.0]])
    # variances 0, 1e-8, 1; mean squares 25, 1e-8, 1
    assert eps_dominated(x, 1e-6, centred=True).tolist() == [2.0, 3.0]
    assert eps_dominated(x, 1e-6, centred=False).tolist() == [1.0, 3.0]


def test_saturated_share_of_dyt_uses_the_one_definition():
    norm = DyT(4)
    with torch.no_grad():
        norm.alpha.fill_(1.0)
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    # 1 - tanh(x)^2 = 1, 0.42, 0.071, 0.0099: two of four below 0.1
    assert share_below(relative_slope(norm, x), KNEE_SLOPE).tolist() == [2.0, 4.0]


def test_massive_ratio_is_max_over_median():
    assert float(massive_ratio(torch.tensor([1.0, -2.0, 3.0, 4.0, -100.0]))) == pytest.approx(100 / 3)


def test_attention_entropy_and_max_logit_by_hand():
    ln3 = math.log(3.0)
    q = torch.tensor([[[[2.0], [1.0]]]])  # (S=1, H=1, T=2, d=1)
    k = torch.tensor([[[[0.0], [ln3]]]])
    (total, count), top = attention_stats(q, k, scaling=1.0)
    # query 0 sees key 0 only (entropy 0); query 1 has logits [0, ln 3]: p = [1/4, 3/4]
    h1 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert (float(total), float(count)) == pytest.approx((h1, 2.0))
    assert float(top) == pytest.approx(ln3)  # q0 . k1 = 2 ln 3 is masked (a future key)
    # grouped-query attention: two query heads share the key head
    (total, count), _ = attention_stats(q.repeat(1, 2, 1, 1), k, scaling=1.0)
    assert (float(total), float(count)) == pytest.approx((2 * h1, 4.0))
    # a padded key is not attended and a padded query not counted
    (total, count), top = attention_stats(q, k, scaling=1.0, key_mask=torch.tensor([[1, 0]]))
    assert (float(total), float(count), float(top)) == pytest.approx((0.0, 1.0, 0.0))


def test_z_loss_and_max_logit_over_target_positions():
    ln3 = math.log(3.0)
    logits = torch.tensor([[[0.0, 0.0], [ln3, 0.0], [50.0, 0.0]]])
    labels = torch.tensor([[7, 1, 1]])  # position t predicts labels[t + 1]: positions 0 and 1
    (total, count), top = output_stats(logits, labels)
    expected = (math.log(2.0) ** 2 + math.log(4.0) ** 2)  # lse [0, 0] = ln 2, lse [ln 3, 0] = ln 4
    assert (float(total), float(count), float(top)) == pytest.approx((expected, 2.0, ln3))
    assert float(z_loss(logits, labels)) == pytest.approx(expected / 2)
    (total, count), top = output_stats(logits, torch.tensor([[7, 1, -100]]))  # position 1 is no target
    assert (float(total), float(count), float(top)) == pytest.approx((math.log(2.0) ** 2, 1.0, 0.0))


def test_gain_stats_and_alpha():
    norm = RMSNorm(3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, -2.0, 3.0]))
    stats = gain_stats({"n": norm, "d": DyT(3)})
    assert stats["monitor/norm/n/gain_mean"] == pytest.approx(2 / 3)
    assert stats["monitor/norm/n/gain_rms"] == pytest.approx(math.sqrt(14 / 3))
    assert stats["monitor/norm/n/gain_max"] == 3.0
    assert stats["monitor/norm/d/alpha"] == pytest.approx(float(DyT(3).alpha.detach()))


def test_tally_finishes_ratios_norms_and_maxima_over_ranks():
    tally = Tally()
    tally.ratio("r", torch.tensor(1.0), torch.tensor(4.0))
    tally.norm("g", torch.tensor(9.0))
    tally.maximum("m", torch.tensor(2.0))
    tally.maximum("m", torch.tensor(1.0))
    assert tally.record() == {"g": 3.0, "m": 2.0, "r": 0.5}
    # a second rank whose pieces equal this one's but whose maximum is twice as large
    assert tally.record(lambda tensor, op: tensor * 2) == {"g": math.sqrt(18.0), "m": 4.0, "r": 0.5}


def test_parameter_groups():
    assert group_of("model.layers.3.mlp.up_proj.weight", "model.layers", "model.norm") == "block_3"
    assert group_of("model.norm.weight", "model.layers", "model.norm") == "final_norm"
    assert group_of("model.embed_tokens.weight", "model.layers", "model.norm") == "embed"
    assert group_of("lm_head.weight", "model.layers", "model.norm") == "head"
    assert group_of("transformer.wpe.weight", "transformer.h", "transformer.ln_f") == "embed"
    assert group_of("transformer.h.0.ln_1.weight", "transformer.h", "transformer.ln_f") == "block_0"


def test_spike_detector_flags_a_value_six_sigmas_above_the_window():
    detector = SpikeDetector(window=8, sigmas=6.0)
    values = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95]
    assert detector.check("loss", 50.0) is None  # nothing is flagged before half the window is filled
    detector.history["loss"].clear()
    assert all(detector.check("loss", v) is None for v in values)
    mean, std = sum(values) / 6, torch.tensor(values).std().item()
    assert detector.check("loss", mean + 5.9 * std) is None
    detector.history["loss"].pop()
    spike = detector.check("loss", mean + 6.1 * std)
    assert spike is not None and spike.mean == pytest.approx(mean) and spike.std == pytest.approx(std)
    assert detector.check("loss", float("nan")) is None and len(detector.history["loss"]) == 7  # NaN never joins


def test_moved_most_ranks_by_growth_since_the_last_monitor_step():
    current = {"block_0": 1.0, "block_1": 10.0, "head": 4.0}
    assert moved_most(current, {"block_0": 0.1, "block_1": 5.0, "head": 4.0}, k=2) == ["block_0 (x10)", "block_1 (x2)"]
    assert moved_most(current, None, k=1) == ["block_1 (10)"]
