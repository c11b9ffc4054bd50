"""Factorial studies: ``factors:`` expands to every combination of levels, each tuning its own grid;
each arm is compared with the baseline level under the same other levels; the interaction statistic
equals the difference of differences written out here, tested with scipy's one-sample t-test."""

from __future__ import annotations

import csv
import json
import re

import pytest
from scipy import stats
from study_helpers import FakeTrainer

from ibnorm_llm.study import StudyError, StudyRunner, build_plan, load_study, write_report
from ibnorm_llm.study.interaction import interactions, layout, means, ranking_sentence, rankings
from ibnorm_llm.study.spec import parse_study

NORM = {"rmsnorm": {"model.norm.kind": "rmsnorm"},
        "ibnorm_l": {"model.norm.kind": "ibnorm", "model.norm.variant": "L"},
        "derf": {"model.norm.kind": "derf"}}
OPTIMIZER = {"adamw": {"optim.name": "adamw", "tune": {"optim.lr": [0.001, 0.01]}},
             "muon": {"optim.name": "muon", "optim.lr": 0.003, "tune": {"optim.muon.lr": [0.01, 0.02]}}}


def design(**changes) -> dict:
    study = {"name": "f", "base": "llama_tiny_rmsnorm.yaml", "overrides": {"train.max_steps": 3},
             "factors": {"norm": NORM, "optimizer": OPTIMIZER}, "baseline": "rmsnorm", "seeds": [0, 1, 2]}
    study.update(changes)
    return study


def test_factors_expand_to_every_combination_each_with_its_levels_grid():
    spec = parse_study(design(tune={"optim.warmup_steps": [1, 2]}))
    assert list(spec.arms) == ["rmsnorm_adamw", "rmsnorm_muon", "ibnorm_l_adamw", "ibnorm_l_muon", "derf_adamw",
                               "derf_muon"]
    assert spec.arms["ibnorm_l_muon"] == {"model.norm.kind": "ibnorm", "model.norm.variant": "L",
                                          "optim.name": "muon", "optim.lr": 0.003}
    assert spec.grid("derf_adamw") == {"optim.warmup_steps": [1, 2], "optim.lr": [0.001, 0.01]}
    assert spec.grid("derf_muon") == {"optim.warmup_steps": [1, 2], "optim.muon.lr": [0.01, 0.02]}
    assert spec.baseline_of("derf_muon") == "rmsnorm_muon" and spec.baseline_of("ibnorm_l_adamw") == "rmsnorm_adamw"
    assert spec.baseline_of("rmsnorm_muon") == "rmsnorm_muon"
    plan = build_plan(spec, "/tmp/unused")
    assert [p.as_dict() for p in plan.grids["ibnorm_l_muon"].points] == [
        {"optim.warmup_steps": w, "optim.muon.lr": lr} for w in (1, 2) for lr in (0.01, 0.02)]


@pytest.mark.parametrize("changes, message", [
    ({"arms": {"x": {}}}, "'arms' and 'factors' are both given"),
    ({"arm_grid": {"a": {"b": {}}}}, "'arm_grid' and 'factors' are both given"),
    ({"factors": {"norm": NORM, "optimizer": {**OPTIMIZER, "lion": {"model.norm.kind": "layernorm"}}}},
     "factors.optimizer.lion sets model.norm.kind, which factor norm also sets; each key belongs to one factor"),
    ({"factors": {"norm": {**NORM, "tuned": {"model.norm.kind": "dyt", "tune": {"optim.lr": [0.1]}}},
                  "optimizer": OPTIMIZER}},
     "factors.optimizer.adamw sets optim.lr, which factor norm also sets"),
    ({"factors": {"norm": NORM, "optimizer": {"adamw": {"optim.lr": 0.01, "tune": {"optim.lr": [0.1]}},
                                              "muon": {"optim.name": "muon"}}}},
     "factors.optimizer.adamw both fixes and tunes optim.lr"),
    ({"tune": {"optim.lr": [0.001]}}, "optim.lr is tuned by the study's tune and by factors.optimizer.adamw.tune"),
    ({"factors": {"norm": NORM, "optimizer": {"adamw": {}}}}, "factors.optimizer has 1 level(s)"),
    ({"baseline": "rmsnorm_adamw"}, "baseline='rmsnorm_adamw' must be a level of the first factor, norm"),
    ({"factors": {"norm": NORM, "optimizer": {**OPTIMIZER, "adamw": {"tune": {"optim.lr": []}}}}},
     "factors.optimizer.adamw.tune.optim.lr=[] must be a non-empty list"),
])
def test_bad_factorial_designs_name_the_key(changes, message):
    with pytest.raises(StudyError, match=re.escape(message)):
        parse_study(design(**changes))


@pytest.mark.parametrize("level, message", [
    ({"optim.name": "adamw", "optim.muon.lr": 0.05},
     "factors.norm.rmsnorm \\+ factors.optimizer.adamw \\(arm rmsnorm_adamw\\): optim.muon.lr is set but "
     "optim.name=adamw"),
    ({"optim.name": "sgd"}, "factors.optimizer.adamw \\(arm rmsnorm_adamw\\): optim.name='sgd': must be one of"),
])
def test_bad_optimizer_levels_are_refused_before_anything_runs(level, message):
    spec = parse_study(design(factors={"norm": NORM, "optimizer": {**OPTIMIZER, "adamw": level}}))
    with pytest.raises(StudyError, match=message):
        build_plan(spec, "/tmp/unused")


# Constructed per-seed test losses with a known interaction: ibnorm_l trails rmsnorm by 0.10 under AdamW
# and leads it by 0.20 under Muon (interaction -0.30, give or take the per-seed wobble below); derf's gap
# is the same under both (interaction 0, give or take the wobble).
SEED_SHIFT = {0: 0.0, 1: 0.05, 2: -0.03}
WOBBLE = {0: 0.004, 1: -0.002, 2: -0.001}
MEANS = {("rmsnorm", "adamw"): 3.0, ("ibnorm_l", "adamw"): 3.1, ("derf", "adamw"): 3.05,
         ("rmsnorm", "muon"): 2.9, ("ibnorm_l", "muon"): 2.7, ("derf", "muon"): 2.95}


def constructed(norm: str, optimizer: str, seed: int) -> float:
    wobble = WOBBLE[seed] if norm != "rmsnorm" and optimizer == "muon" else 0.0
    return MEANS[(norm, optimizer)] + SEED_SHIFT[seed] + wobble


def test_interaction_is_the_difference_of_differences_with_a_paired_test():
    spec = parse_study(design())
    per_seed = {arm: {s: constructed(*spec.factorial.levels[arm], s) for s in range(3)} for arm in spec.arms}
    grid = layout(spec.factorial)
    assert (grid.rows, grid.columns, grid.reference) == (("rmsnorm", "ibnorm_l", "derf"), ("adamw", "muon"), "adamw")
    gaps = {(g.row, g.column): g for g in interactions(per_seed, grid, "rmsnorm")}
    assert set(gaps) == {("ibnorm_l", "adamw"), ("ibnorm_l", "muon"), ("derf", "adamw"), ("derf", "muon")}
    for norm in ("ibnorm_l", "derf"):
        contrasts = [(constructed(norm, "muon", s) - constructed("rmsnorm", "muon", s))
                     - (constructed(norm, "adamw", s) - constructed("rmsnorm", "adamw", s)) for s in range(3)]
        expected = stats.ttest_1samp(contrasts, 0.0)
        moved = gaps[(norm, "muon")].interaction
        assert moved.n == 3 and moved.mean_difference == pytest.approx(sum(contrasts) / 3)
        assert moved.t == pytest.approx(expected.statistic) and moved.p == pytest.approx(expected.pvalue)
        assert gaps[(norm, "adamw")].interaction is None
    assert gaps[("ibnorm_l", "muon")].interaction.mean_difference == pytest.approx(-0.3 + sum(WOBBLE.values()) / 3)
    assert gaps[("ibnorm_l", "muon")].interaction.p < 0.01
    assert gaps[("derf", "muon")].interaction.p > 0.05
    assert gaps[("ibnorm_l", "adamw")].versus_baseline.mean_difference == pytest.approx(0.1)

    order = rankings(means(per_seed, grid), grid)
    assert order == {"adamw": ("rmsnorm", "derf", "ibnorm_l"), "muon": ("ibnorm_l", "rmsnorm", "derf")}
    sentence = ranking_sentence(order, list(gaps.values()), grid)
    assert sentence.startswith("The ranking of norm changes with optimizer")
    assert "1 of the 2 gap changes (interactions) are significant at 0.05" in sentence


def test_a_ranking_that_holds_says_so_and_a_reordering_within_noise_is_flagged():
    spec = parse_study(design())
    grid = layout(spec.factorial)
    same = {arm: {s: MEANS[(spec.factorial.levels[arm][0], "adamw")] + SEED_SHIFT[s] + (0.01 * s if "muon" in arm
                                                                                        else 0.0)
                  for s in range(3)} for arm in spec.arms}
    gaps = interactions(same, grid, "rmsnorm")
    sentence = ranking_sentence(rankings(means(same, grid), grid), gaps, grid)
    assert sentence.startswith("The ranking of norm is the same under every optimizer (rmsnorm < derf < ibnorm_l")
    # derf trails rmsnorm by 0.01 under AdamW and leads it by 0.02 on average under Muon, with a per-seed
    # gap of -0.2, +0.2, -0.06: the order swaps, the interaction is far from significant.
    noisy = {arm: {s: 3.0 + SEED_SHIFT[s] + (0.1 if arm.startswith("ibnorm_l") else 0.0) for s in range(3)}
             for arm in spec.arms}
    noisy["derf_adamw"] = {s: noisy["rmsnorm_adamw"][s] + 0.01 for s in range(3)}
    noisy["derf_muon"] = {s: noisy["rmsnorm_muon"][s] + (-0.2, 0.2, -0.06)[s] for s in range(3)}
    gaps = interactions(noisy, grid, "rmsnorm")
    sentence = ranking_sentence(rankings(means(noisy, grid), grid), gaps, grid)
    assert "changes with optimizer" in sentence and "the reordering is within seed noise" in sentence


def losses_by_cell(cfg):
    """(validation, test): the constructed means above; lr 0.01 best under AdamW, muon lr 0.02 under Muon."""
    norm = {"rmsnorm": "rmsnorm", "ibnorm": "ibnorm_l", "derf": "derf"}[cfg.model.norm.kind]
    optimizer = cfg.optim.name
    tuned_well = cfg.optim.lr == 0.01 if optimizer == "adamw" else cfg.optim.muon.lr == 0.02
    test = constructed(norm, optimizer, cfg.train.seed)
    return test + (0.0 if tuned_well else 0.5), test


def test_factorial_study_report_has_the_two_way_table_and_the_interaction(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text(json.dumps(design()))
    trainer = FakeTrainer(losses_by_cell, by_config=True)
    plan = build_plan(load_study(path), tmp_path / "out")
    results = StudyRunner(plan, execute=trainer).run()
    tuning = sorted(c for c in trainer.calls if c.endswith("seed0"))
    assert "f_derf_muon_muonlr0.01_seed0" in tuning and "f_derf_adamw_lr0.001_seed0" in tuning and len(tuning) == 12
    assert {arm: c.point.as_dict() for arm, c in results.choices.items()}["ibnorm_l_muon"] == {"optim.muon.lr": 0.02}
    report = write_report(results).read_text()
    assert "## norm × optimizer (test split, chosen settings per cell)" in report
    assert "The ranking of norm changes with optimizer (under adamw: rmsnorm < derf < ibnorm_l; " in report
    assert "| norm \\ optimizer | adamw | muon |" in report
    assert "| ibnorm_l | +0.1000 ± 0.0000 (n=3) |" in report
    # The one-way table compares each arm with rmsnorm under the same optimizer.
    assert "| rmsnorm_muon (baseline) |" in report and "| rmsnorm_adamw (baseline) |" in report
    assert "**ibnorm_l_muon vs rmsnorm_muon: supported**: ibnorm_l_muon is better (-0.1997" in report
    rows = list(csv.DictReader(open(plan.out / "interaction.csv")))
    moved = {(r["norm"], r["condition"]): r for r in rows}
    assert float(moved[("ibnorm_l", "muon")]["interaction"]) == pytest.approx(-0.3 + sum(WOBBLE.values()) / 3)
    assert moved[("ibnorm_l", "adamw")]["interaction"] == "" and len(rows) == 4
    assert (plan.out / "lr_sensitivity.png").is_file()


def test_dry_run_names_the_factors_and_the_per_condition_baseline(tmp_path):
    from ibnorm_llm.cli.study import describe_plan

    text = describe_plan(build_plan(parse_study(design()), tmp_path), None)
    assert "factorial: norm: rmsnorm, ibnorm_l, derf; optimizer: adamw, muon; each arm compared with rmsnorm" in text
    assert "f_ibnorm_l_muon_muonlr0.02_seed0" in text and "12 runs" in text
