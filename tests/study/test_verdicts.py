"""The report's first lines: what a study supports, from constructed per-seed test losses."""

from ibnorm_llm.stats import seed_test, spread
from ibnorm_llm.study.plan import Point
from ibnorm_llm.study.report import ArmSummary, TaskSummary, verdicts

POINT = Point((("optim.lr", 0.003),))


def arm(name, losses, base=None, suite=None):
    summary = ArmSummary(arm=name, point=POINT, validation_loss=3.0, test_loss=losses, test_bpb={},
                         diverged_seeds=(), at_edge=(), failed_points=(), skipped={}, suites=suite or {})
    if base is not None:
        summary = ArmSummary(**{**summary.__dict__, "vs_baseline": seed_test(losses, base)})
    return summary


def test_a_difference_smaller_than_the_seed_spread_is_not_supported():
    base = {0: 3.0, 1: 3.5, 2: 2.8}
    noisy = {0: 3.1, 1: 3.3, 2: 2.95}  # mean +0.017, seed sd ~0.36
    lines = verdicts([arm("rms", base), arm("ib", noisy, base)], "rms")
    assert lines[0].startswith("**ib vs rms: no difference supported**") and "smaller than the seed spread" in lines[0]


def test_single_seed_supports_nothing_and_consistent_shift_is_supported():
    lines = verdicts([arm("rms", {0: 3.0}), arm("ib", {0: 2.5}, {0: 3.0})], "rms")
    assert "not supported either way" in lines[0]
    base = {0: 3.0, 1: 3.2, 2: 3.4}
    shifted = {0: 2.5, 1: 2.71, 2: 2.89}  # lower by 0.5 +- 0.01 on every seed
    lines = verdicts([arm("rms", base), arm("ib", shifted, base)], "rms")
    assert lines[0].startswith("**ib vs rms: supported**: ib is better (-0.5000 nats test loss, paired t-test")


def test_suite_scores_at_chance_are_called_out():
    at_chance = {"piqa": TaskSummary("acc_norm", spread([0.49, 0.5]), None, 0.5)}
    lines = verdicts([arm("rms", {0: 3.0, 1: 3.1}, suite={"small": at_chance})], "rms")
    assert any("piqa (small) at or below chance" in line for line in lines)
