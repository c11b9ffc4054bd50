"""The IBNorm-claims table on constructed arm facts: every claim's rule, the binarizing mark."""

from __future__ import annotations

import pytest

from ibnorm_llm.study.claims import ArmFacts, Reading, claim_cells, readings_of


def facts(arm, kind="ibnorm", reading=("std", "rate"), variant="L", lam=4.0, affine=True, loss=3.0, saturated=0.1,
          kurtosis=1.0, beyond=0.01, ib=0.5) -> ArmFacts:
    return ArmFacts(arm, kind, reading if kind == "ibnorm" else None, variant if kind == "ibnorm" else None,
                    lam if kind == "ibnorm" else None, affine, loss, saturated, kurtosis, beyond, ib)


BASELINES = {"layernorm": facts("ln", kind="layernorm", loss=3.1, saturated=None, kurtosis=0.5, beyond=0.02, ib=0.4),
             "rmsnorm": facts("rms", kind="rmsnorm", loss=3.05, saturated=None, kurtosis=0.6, beyond=0.02, ib=0.45)}


def consistent_reading(reading=("std", "rate")) -> list[ArmFacts]:
    """Arms built so that every claim holds."""
    arms = []
    for variant, share, spread in (("S", 0.0, 0.01), ("L", 0.1, 0.05), ("T", 0.3, 0.2)):
        for lam, extra in ((0.5, 1.0), (2.0, 0.5), (4.0, 0.0), (8.0, 1.0)):
            arms.append(facts(f"{variant}{lam}", reading=reading, variant=variant, lam=lam,
                              loss=3.0 + spread * extra, saturated=share * lam / 4))
    arms.append(facts("L4_bare", reading=reading, affine=False, loss=3.1))
    return arms


def test_every_claim_holds_on_a_consistent_reading():
    cells = claim_cells(Reading(("std", "rate"), consistent_reading()), BASELINES)
    assert {key: cell.holds for key, cell in cells.items()} == {k: True for k in ("1a", "1b", "2", "3", "4", "5")}
    assert "+3.3% loss without affine" in str(cells["5"])
    assert str(cells["2"]).startswith("✓ (IB 0.500 vs best baseline 0.450)")
    assert Reading(("std", "rate"), consistent_reading()).binarizes() is False


def test_a_binarizing_reading_fails_the_mechanism_claims():
    arms = [facts(f"L{lam}", lam=lam, saturated=0.95, kurtosis=-1.9, beyond=0.0, ib=0.02, loss=3.5 - lam * 0.01)
            for lam in (0.5, 2.0, 4.0, 8.0)]
    reading = Reading(("std", "rate"), arms)
    cells = claim_cells(reading, BASELINES)
    assert cells["1a"].holds is False and cells["2"].holds is False
    assert cells["1b"].holds is True  # a two-point distribution has no tails at all
    assert cells["3"].holds is False  # lam 8 beats lam 4, and the share does not grow
    assert cells["4"].holds is None and cells["5"].holds is None  # no S/T arms, no affine-free arm: not measurable
    assert str(cells["4"]) == "n/a"
    assert reading.binarizes() is True


def test_t_strongest_needs_a_measurable_gap():
    arms = [facts(f"{v}{lam}", variant=v, lam=lam, saturated=0.0, loss=3.0 + 0.01 * lam * (v != "S"))
            for v in "SLT" for lam in (0.5, 4.0, 8.0)]
    cell = claim_cells(Reading(("std", "rate"), arms), BASELINES)["4"]
    assert cell.holds is False and "saturated S/L/T 0%/0%/0%" in str(cell)


@pytest.mark.parametrize("weak, strong, holds", [(3.2, 3.3, True), (2.9, 3.3, False), (3.2, 2.95, False)])
def test_lambda_four_must_beat_both_ends(weak, strong, holds):
    arms = [facts("a", lam=0.5, loss=weak, saturated=0.0), facts("b", lam=4.0, loss=3.0, saturated=0.2),
            facts("c", lam=8.0, loss=strong, saturated=0.4)]
    assert claim_cells(Reading(("std", "rate"), arms), BASELINES)["3"].holds is holds


def test_readings_are_found_in_first_appearance_order():
    arms = consistent_reading(("raw", "rate")) + consistent_reading(("std", "scale")) + list(BASELINES.values())
    assert [r.name for r in readings_of(arms)] == ["raw-rate", "std-scale"]
