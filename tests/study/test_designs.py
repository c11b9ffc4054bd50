"""Large study designs on constructed runs: arm grids, arms that reuse an anchor's tuned point,
later seeds for the best arm of each anchor group only, parallel jobs, and the file errors."""

from __future__ import annotations

import json

import pytest
from study_helpers import FakeTrainer

from ibnorm_llm.study import StudyError, StudyRunner, build_plan, load_study
from ibnorm_llm.study.runner import analyze_command
from ibnorm_llm.study.spec import parse_study

GRID = {
    "variant": {"L": {"model.norm.kind": "ibnorm", "model.norm.variant": "L"},
                "T": {"model.norm.kind": "ibnorm", "model.norm.variant": "T"}},
    "lam": {"lam2": {"model.norm.lam": 2.0}, "lam4": {"model.norm.lam": 4.0}},
}


def design(**changes) -> dict:
    study = {
        "name": "d", "base": "llama_tiny_rmsnorm.yaml", "overrides": {"train.max_steps": 3},
        "arms": {"rmsnorm": {"model.norm.kind": "rmsnorm"}},
        "arm_grid": GRID, "baseline": "rmsnorm", "tune": {"optim.lr": [0.001, 0.01]}, "seeds": [0, 1, 2],
        "tune_from": {"*_lam*": "L_lam4"}, "final_seeds": "best_per_anchor",
    }
    study.update(changes)
    return study


def losses_by_config(cfg):
    """Stand-in (validation, test) losses: lr 0.01 best for every arm; T at lam 2 the best IBNorm arm."""
    norm = cfg.model.norm
    base = 3.0 if norm.kind == "rmsnorm" else {"L": 3.2, "T": 3.1}[norm.variant] + (norm.lam or 0) * 0.01
    validation = base + (0.0 if cfg.optim.lr == 0.01 else 0.5) + 0.01 * cfg.train.seed
    return validation, validation + 0.1


def test_arm_grid_generates_named_arms_and_exclude_removes_them():
    spec = parse_study(design(exclude=["T_lam2"]))
    assert list(spec.arms) == ["rmsnorm", "L_lam2", "L_lam4", "T_lam4"]
    assert spec.arms["T_lam4"] == {"model.norm.kind": "ibnorm", "model.norm.variant": "T", "model.norm.lam": 4.0}
    assert spec.anchor("T_lam4") == "L_lam4" and spec.anchor("L_lam4") == "L_lam4" and spec.anchor("rmsnorm") == "rmsnorm"


@pytest.mark.parametrize("changes, message", [
    ({"exclude": ["T_lam3"]}, "exclude names 'T_lam3', which the arm_grid does not generate; did you mean"),
    ({"arm_grid": {**GRID, "again": {"x": {"model.norm.variant": "S"}}}}, "set model.norm.variant twice"),
    ({"arms": {"rmsnorm": {"model.norm.kind": "rmsnorm"}, "L_lam2": {}}}, "both listed under arms and generated"),
    ({"tune_from": {"nothing*": "L_lam4"}}, "matches no arm besides its anchor"),
    ({"tune_from": {"*_lam2": "nope"}}, "'nope' is not an arm"),
    ({"tune_from": {"T_*": "L_lam4", "L_lam4": "L_lam2"}}, "an anchor must tune its own grid"),
    ({"tune_from": {"*_lam2": "L_lam4", "L_*": "T_lam4"}}, "matches two tune_from patterns"),
    ({"final_seeds": "best"}, "final_seeds='best' must be one of all, best_per_anchor"),
    ({"claims": "paper"}, "claims='paper' must be one of none, ibnorm_paper"),
    ({"arm_grid": {"variant": {}}}, "arm_grid.variant has no levels"),
])
def test_bad_designs_name_the_key(changes, message):
    with pytest.raises(StudyError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_study(design(**changes))


def run_design(tmp_path, jobs: int = 1, **changes):
    path = tmp_path / "d.yaml"
    path.write_text(json.dumps(design(**changes)))
    trainer = FakeTrainer(losses_by_config, by_config=True)
    plan = build_plan(load_study(path), tmp_path / f"out{jobs}")
    return plan, trainer, StudyRunner(plan, execute=trainer, jobs=jobs).run()


def test_followers_reuse_the_anchor_point_and_only_the_best_runs_later_seeds(tmp_path):
    plan, trainer, results = run_design(tmp_path)
    seed0 = [c for c in trainer.calls if c.endswith("_seed0")]
    # Grids for the anchor (L_lam4) and the standalone baseline only: 2 + 2 points; 3 followers at the chosen lr.
    assert sorted(seed0) == sorted([
        "d_rmsnorm_lr0.001_seed0", "d_rmsnorm_lr0.01_seed0", "d_L_lam4_lr0.001_seed0", "d_L_lam4_lr0.01_seed0",
        "d_L_lam2_lr0.01_seed0", "d_T_lam2_lr0.01_seed0", "d_T_lam4_lr0.01_seed0"])
    # Later seeds: the baseline (its own group) and the group's best on validation (T at lam 2).
    later = sorted(c for c in trainer.calls if not c.endswith("_seed0"))
    assert later == ["d_T_lam2_lr0.01_seed1", "d_T_lam2_lr0.01_seed2", "d_rmsnorm_lr0.01_seed1",
                     "d_rmsnorm_lr0.01_seed2"]
    assert sorted(results.finals["T_lam2"]) == [0, 1, 2] and sorted(results.finals["L_lam2"]) == [0]
    selection = json.loads((plan.out / "selection.json").read_text())
    assert selection["T_lam4"]["tuned_on"] == "L_lam4" and selection["T_lam4"]["point"] == {"optim.lr": 0.01}
    assert selection["T_lam4"]["validation_loss"] == pytest.approx(3.14)


def test_parallel_jobs_give_the_same_study(tmp_path):
    _, serial_trainer, serial = run_design(tmp_path, jobs=1)
    _, parallel_trainer, parallel = run_design(tmp_path, jobs=3)
    assert sorted(serial_trainer.calls) == sorted(parallel_trainer.calls)
    for arm, runs in serial.finals.items():
        assert {s: r.test_loss for s, r in runs.items()} == {s: r.test_loss for s, r in parallel.finals[arm].items()}


def test_all_final_seeds_by_default_and_the_analysis_command(tmp_path):
    plan, trainer, results = run_design(tmp_path, final_seeds="all")
    assert all(sorted(runs) == [0, 1, 2] for runs in results.finals.values())
    plan = build_plan(parse_study(design(analyze={"n_tokens": 256, "chance": False})), tmp_path / "a")
    command = analyze_command(plan, plan.run("L_lam4", plan.grids["L_lam4"].points[0], 0))
    assert command[1:4] == ["-m", "ibnorm_llm", "analyze"] and "--no-chance" in command
    assert command[command.index("--n-tokens") + 1] == "256"
    assert command[command.index("--checkpoint") + 1].endswith("d_L_lam4_lr0.001_seed0/checkpoints/final")
