"""A scaled-down ladder end to end with real training (2 arms, 3 sizes, 2 budgets), and `ibnorm-llm ladder`
on it: a rerun trains nothing; a bad file exits 2 with a one-line error."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ladder_helpers import write_ladder

from ibnorm_llm.config import load_config
from ibnorm_llm.ladder.plan import build_ladder_plan
from ibnorm_llm.ladder.report import write_report
from ibnorm_llm.ladder.runner import LadderRunner
from ibnorm_llm.ladder.spec import load_ladder
from ibnorm_llm.study.runner import NONFINITE_EXIT
from ibnorm_llm.train.metrics import read_metrics
from ibnorm_llm.train.trainer import NonFiniteError, train

ROOT = Path(__file__).resolve().parents[2]


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ibnorm_llm", "ladder", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def in_process(command: list[str], log: Path) -> int:
    """Each training in this process: the same trainer the subprocess would run, without its start-up cost."""
    cfg = load_config(command[command.index("--config") + 1])
    try:
        train(cfg)
    except NonFiniteError:
        return NONFINITE_EXIT
    return 0


def test_bad_ladder_file_exits_2_with_one_line_naming_the_key(tmp_path):
    path = write_ladder(tmp_path / "bad.yaml", budgets=[10, 5])
    result = run_script("--ladder", str(path), "--dry-run")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("ladder error: ")
    assert "budgets=[10, 5] must increase" in result.stderr


@pytest.mark.slow
def test_scaled_down_ladder_trains_branches_fits_reports_and_a_rerun_trains_nothing(tmp_path, data_files):
    path = write_ladder(tmp_path / "e2e.yaml", data_files, name="e2e")
    out = tmp_path / "out"
    plan = build_ladder_plan(load_ladder(path), out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = LadderRunner(plan, execute=in_process).run()
    finally:
        torch.set_num_threads(threads)
    runs = sorted(p.name for p in out.glob("e2e_*") if p.is_dir())
    assert len(runs) == 12  # 2 arms x 3 sizes x 2 budgets, one seed, one learning rate
    for arm in ("rmsnorm", "ibnorm_l"):
        for size in "abc":
            short, long = [p for p in results.points if p.arm == arm and p.size == size]
            budgets = plan.budgets[size]
            # The long budget branched from the short run's decay start and trained only the rest.
            record = json.loads((out / long.run / "run.json").read_text())
            assert record["resumed_from"] == str(out / short.run / "checkpoints" / f"step_{budgets[0].decay_start}")
            assert record["start_step"] == budgets[0].decay_start
            steps = [r["step"] for r in read_metrics(out / long.run / "metrics.jsonl") if "loss" in r]
            assert min(steps) > budgets[0].decay_start and max(steps) == budgets[1].steps
            final = read_metrics(out / long.run / "metrics.jsonl")[-1]
            assert long.loss == final["test_loss"] != final["eval_loss"]
            assert long.D == final["tokens"] and short.D < long.D and long.N_total > long.N
    lr = {p.size: p.point.as_dict()["optim.lr"] for p in results.points if p.arm == "rmsnorm"}
    assert lr["a"] == 0.01 and lr["a"] > lr["b"] > lr["c"]  # tuned at the smallest, transferred by N^-1/3
    assert json.loads((out / "selection.json").read_text())["rmsnorm"]["a"]["selected_on"] == "validation"

    report = write_report(results, n_bootstrap=50).read_text()
    head = report.split("## Protocol")[0]
    assert report.startswith("# Ladder e2e\n\n## What this ladder supports")
    assert "**Held-out check**" in head and "the fit without c is not possible" in head  # 4 points left
    assert "ibnorm_l vs rmsnorm at llama-1b: predicted difference" in head
    assert "ibnorm_l: no crossover with rmsnorm" in head or "ibnorm_l overtakes" in head or "falls behind" in head
    for section in ("## Fitted laws", "## Held-out check at the largest size", "## Predictions at the targets",
                    "## Crossover with rmsnorm"):
        assert section in report
    fits = list(csv.DictReader(open(out / "fits.csv")))
    assert {(r["arm"], r["fit"]) for r in fits} == {("rmsnorm", "all sizes"), ("ibnorm_l", "all sizes")}
    assert all(float(r["alpha_low"]) <= float(r["alpha"]) <= float(r["alpha_high"]) for r in fits)
    points = list(csv.DictReader(open(out / "points.csv")))
    assert len(points) == 12 and all(float(p["test_loss"]) > 0 and p["fitted_loss"] for p in points)
    assert (out / "ladder.png").stat().st_size > 5000 and (out / "residuals.png").stat().st_size > 5000

    again = run_script("--ladder", str(path), "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("finished earlier, skipped") == 12 and ": training" not in again.stderr
    assert (out / "report.md").read_text().startswith("# Ladder e2e")
