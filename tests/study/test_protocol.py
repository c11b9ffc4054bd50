"""The study protocol on constructed runs of known losses: tuning, selection on validation only,
skipped grid keys, final seeds, resuming an interrupted study, and the report's numbers."""

from __future__ import annotations

import csv
import json

import pytest
from study_helpers import FakeTrainer

from ibnorm_llm.study import StudyError, StudyRunner, build_plan, load_study, write_report
from ibnorm_llm.study.plan import Point
from ibnorm_llm.study.results import Measurement
from ibnorm_llm.study.selection import choose

# Validation prefers lr 0.003 for RMSNorm and lr 0.01 for IBNorm-T; the TEST numbers are built to
# prefer other points, so choosing on them would show.
VALIDATION = {("rmsnorm", 0.001): 4.0, ("rmsnorm", 0.003): 3.0, ("rmsnorm", 0.01): 3.5,
              ("ibnorm_T", 0.001): 4.2, ("ibnorm_T", 0.003): 3.9, ("ibnorm_T", 0.01): 3.2}
TEST = {("rmsnorm", 0.001): 1.0, ("rmsnorm", 0.003): 3.1, ("rmsnorm", 0.01): 2.0,
        ("ibnorm_T", 0.001): 1.0, ("ibnorm_T", 0.003): 2.0, ("ibnorm_T", 0.01): 3.3}


def known_losses(norm: str, lr: float, seed: int):
    # Seeds move the test loss by a known amount per seed, the same for both arms except +0.01*seed for IBNorm.
    shift = 0.1 * seed + (0.01 * seed if norm == "ibnorm_T" else 0.0)
    return VALIDATION[(norm, lr)] + 0.05 * seed, TEST[(norm, lr)] + shift


def run_study(path, out, trainer):
    plan = build_plan(load_study(path), out)
    return plan, StudyRunner(plan, execute=trainer).run()


def test_selection_uses_validation_and_final_numbers_come_from_test(study_file, tmp_path):
    trainer = FakeTrainer(known_losses)
    plan, results = run_study(study_file(), tmp_path / "out", trainer)
    chosen = {arm: c.point.as_dict() for arm, c in results.choices.items()}
    assert chosen["rmsnorm"] == {"optim.lr": 0.003}
    # lam is tuned for IBNorm-T only; both lam values give the same losses here, the first wins the tie.
    assert chosen["ibnorm_t"] == {"optim.lr": 0.01, "model.norm.lam": 2.0}
    assert json.loads((plan.out / "selection.json").read_text())["rmsnorm"]["selected_on"] == "validation"
    # Tuning: 3 points for RMSNorm (lam skipped), 3 x 2 for IBNorm-T, at seed 0; then 2 more seeds per arm.
    tuning = [c for c in trainer.calls if c.endswith("_seed0")]
    assert len(tuning) == 9 and len(trainer.calls) == 9 + 2 * 2
    assert not any("rmsnorm" in c and "lam" in c for c in trainer.calls)
    assert all(cfg["resume"] == "auto" and cfg["test"] and cfg["test_fraction"] == 0.05
               for cfg in trainer.configs.values())
    for runs in results.finals.values():
        assert sorted(runs) == [0, 1, 2]
        for r in runs.values():
            assert r.test_loss.split == "test" and r.validation_loss.split == "validation"

    report = write_report(results)
    text = report.read_text()
    assert "rmsnorm" in text and "lam" in text and "rmsnorm takes no lam" in text
    rows = {r["arm"]: r for r in csv.DictReader(open(plan.out / "report.csv"))}
    # RMSNorm's test losses at its chosen point: 3.1, 3.2, 3.3; IBNorm-T's: 3.3, 3.41, 3.52.
    assert float(rows["rmsnorm"]["test_loss_mean"]) == pytest.approx(3.2)
    assert float(rows["ibnorm_t"]["test_loss_mean"]) == pytest.approx(3.41)
    assert float(rows["ibnorm_t"]["diff_test_loss_vs_baseline"]) == pytest.approx(0.21)
    assert float(rows["ibnorm_t"]["test_bpb_mean"]) == pytest.approx(3.41 / 2)
    assert rows["rmsnorm"]["n"] == "3"
    assert (plan.out / "lr_sensitivity.png").stat().st_size > 0 and (plan.out / "loss_curves.png").stat().st_size > 0
    # The differences are 0.2, 0.21, 0.22: larger than the seed spread (0.1) and consistent -> supported.
    first_lines = text.split("## Protocol")[0]
    assert "ibnorm_t vs rmsnorm: supported" in first_lines and "ibnorm_t is worse" in first_lines
    # IBNorm-T's chosen lr is the largest of the grid (and lam the smallest): its optimum may lie outside.
    assert "ibnorm_t's chosen optim.lr, model.norm.lam is at the edge of the grid" in first_lines
    assert "rmsnorm's chosen" not in first_lines
    # Test numbers of points selection rejected are never reported.
    runs = list(csv.DictReader(open(plan.out / "runs.csv")))
    rejected = [r for r in runs if r["phase"] == "tuning"]
    assert rejected and all(r["test_loss"] == "" for r in rejected)


def test_choose_refuses_test_numbers_and_skips_diverged_points():
    a, b, c = (Point((("optim.lr", v),)) for v in (0.001, 0.003, 0.01))
    choice = choose("x", {a: Measurement(3.0, "validation"), b: None, c: Measurement(2.5, "validation")})
    assert choice.point == c and choice.failed == (b,) and choice.at_edge == ("optim.lr",)
    with pytest.raises(ValueError, match="given a test number"):
        choose("x", {a: Measurement(1.0, "test")})
    with pytest.raises(StudyError, match="every grid point diverged"):
        choose("x", {a: None})


def test_diverged_grid_point_is_reported_not_fatal(study_file, tmp_path):
    def losses(norm, lr, seed):
        return None if lr == 0.01 else known_losses(norm, lr, seed)

    plan, results = run_study(study_file(tune={"optim.lr": [0.001, 0.003, 0.01]}), tmp_path / "out", FakeTrainer(losses))
    assert results.choices["ibnorm_t"].point.as_dict() == {"optim.lr": 0.003}
    assert "diverged at optim.lr=0.01" in write_report(results).read_text()


def test_interrupted_study_resumes_without_retraining_finished_runs(study_file, tmp_path):
    path, out = study_file(), tmp_path / "out"
    crashing = FakeTrainer(known_losses, fail_on=4)
    with pytest.raises(StudyError, match="failed .* rerun the same command"):
        run_study(path, out, crashing)
    finished = crashing.calls[:3]
    interrupted = crashing.calls[3]
    again = FakeTrainer(known_losses)
    _, results = run_study(path, out, again)
    assert not set(finished) & set(again.calls)  # nothing finished is trained again
    assert again.calls[0] == interrupted and again.configs[interrupted]["resume"] == "auto"
    assert len(crashing.calls) - 1 + len(again.calls) == 13
    third = FakeTrainer(known_losses)
    run_study(path, out, third)
    assert third.calls == []  # a finished study reruns nothing


@pytest.mark.parametrize("changes, message", [
    ({"baseline": "layernorm"}, "baseline='layernorm' is not one of the arms"),
    ({"seeds": []}, "seeds=\\[\\] must be a non-empty list"),
    ({"tune": {"optim.lr": []}}, "tune.optim.lr=\\[\\] must be a non-empty list"),
    ({"eval": {"suite": "big"}}, "eval.suite='big': must be one of"),
    ({"eval": [{"suite": "small"}, {"suite": "small", "limit": 2}]}, "eval lists suite small twice"),
    ({"eval": {"suite": "small", "test": True}}, "eval.test is set by the study itself"),
    ({"eval": [{"suite": "small", "limt": 2}]}, r"unknown config key 'eval\[0\].limt'"),
    ({"arm": {}}, "unknown key 'arm'; did you mean 'arms'"),
    ({"tune": {"optim.lrr": [0.1]}}, "unknown config key 'optim.lrr'"),
    ({"tune": {"model.norm.variant": ["S"]}}, "both tuned and fixed by arms.ibnorm_t"),
])
def test_bad_study_files_name_the_problem(study_file, tmp_path, changes, message):
    with pytest.raises(StudyError, match=message):
        build_plan(load_study(study_file(**changes)), tmp_path / "out")


@pytest.mark.parametrize("name", ["tiny_norms", "llama60m_norms"])
def test_shipped_studies_plan(name, tmp_path):
    from pathlib import Path

    plan = build_plan(load_study(Path(__file__).resolve().parents[2] / "studies" / f"{name}.yaml"), tmp_path)
    assert len(plan.tuning_runs()) == 12 and len(plan.spec.seeds) == 3  # 4 norms x 3 lrs, then 2 x 4 more
    assert all(plan.config(run).eval.test and plan.config(run).data.test_fraction > 0 for run in plan.tuning_runs())


def test_a_foreign_finished_folder_is_named_not_retrained_forever(study_file, tmp_path):
    class NoTestNumbers(FakeTrainer):
        def __call__(self, command, log):
            code = super().__call__(command, log)
            metrics = log.parents[1] / self.calls[-1] / "metrics.jsonl"
            lines = metrics.read_text().splitlines()
            record = json.loads(lines[-1])
            del record["test_loss"]
            metrics.write_text("\n".join([*lines[:-1], json.dumps(record)]) + "\n")
            return code

    with pytest.raises(StudyError, match="without the test split's numbers .* move it away"):
        run_study(study_file(), tmp_path / "out", NoTestNumbers(known_losses))


def test_launcher_wraps_the_training_command_and_a_missing_one_is_named(study_file, tmp_path):
    from ibnorm_llm.study.runner import _execute, training_command

    plan = build_plan(load_study(study_file()), tmp_path / "out")
    run = plan.tuning_runs()[0]
    command = training_command(run, "accelerate launch --config_file 'launch/ddp.yaml'")
    assert command[:4] == ["accelerate", "launch", "--config_file", "launch/ddp.yaml"]
    assert command[4:] == ["-m", "ibnorm_llm", "train", "--config", str(run.config_path)]
    with pytest.raises(StudyError, match="no such program \\(check --launcher\\)"):
        _execute(["no-such-launcher", "x"], tmp_path / "log")


def test_every_listed_suite_evaluates_every_final_run_with_its_own_settings(study_file, tmp_path):
    import shutil
    from pathlib import Path

    summary = Path(__file__).resolve().parents[1] / "evaluation" / "fixtures" / "results" / "rmsnorm_s0"
    trainer, evaluations = FakeTrainer(known_losses), []

    def execute(command, log):
        if command[1:4] != ["-m", "ibnorm_llm", "eval"]:
            return trainer(command, log)
        evaluations.append(command)
        shutil.copytree(summary, command[command.index("--out") + 1])  # a v1 summary stands in for either suite
        return 0

    path = study_file(tune={"optim.lr": [0.003]}, seeds=[0, 1],
                      eval=[{"suite": "v1", "smoke": True}, {"suite": "small", "limit": 2}])
    plan = build_plan(load_study(path), tmp_path / "out")
    results = StudyRunner(plan, execute=execute).run()
    final_runs = [run for arm in results.finals.values() for run in arm.values()]
    assert len(evaluations) == 2 * len(final_runs) == 8
    v1 = [c for c in evaluations if c[c.index("--suite") + 1] == "v1"]
    small = [c for c in evaluations if c[c.index("--suite") + 1] == "small"]
    assert all("--smoke" in c and "--limit" not in c for c in v1)
    assert all(c[c.index("--limit") + 1] == "2" and "--smoke" not in c for c in small)
    assert {c[c.index("--out") + 1].rsplit("/", 1)[1] for c in evaluations} == {"eval_v1", "eval_small"}
    report = write_report(results).read_text()
    assert "## v1 suite on the final runs" in report and "## small suite on the final runs" in report
    assert report.count("Offline smoke: a pipeline check, not a result") == 1  # only the smoke suite says so
    # A rerun evaluates nothing again: the summaries are there.
    evaluations.clear()
    StudyRunner(plan, execute=execute).run()
    assert evaluations == []
