"""`ibnorm-llm study` (through its scripts/study.py shim) end to end with real training: a scaled-down study (2 arms, 2 learning rates, 2 seeds)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from study_helpers import tiny_run_overrides

from ibnorm_llm.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]


def study(tmp_path, data, **changes) -> Path:
    spec = {
        "name": "e2e", "base": "llama_tiny_rmsnorm.yaml", "overrides": {**tiny_run_overrides(data), "monitor.every": 3},
        "arms": {"rmsnorm": {"model.norm.kind": "rmsnorm"},
                 "ibnorm_t": {"model.norm.kind": "ibnorm", "model.norm.variant": "T"}},
        "baseline": "rmsnorm", "tune": {"optim.lr": [0.003, 0.01], "model.norm.lam": [4.0]}, "seeds": [0, 1],
        **changes,
    }
    path = tmp_path / "e2e.yaml"
    path.write_text(json.dumps(spec))
    return path


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/study.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path, data_files):
    out = tmp_path / "out"
    result = run_script("--study", str(study(tmp_path, data_files)), "--out", str(out), "--dry-run",
                        "--launcher", "accelerate launch --config_file launch/ddp.yaml")
    assert result.returncode == 0, result.stderr
    assert "1) tuning at seed 0: 4 runs" in result.stdout
    assert "skip model.norm.lam: rmsnorm takes no lam" in result.stdout
    assert "accelerate launch --config_file launch/ddp.yaml" in result.stdout and "-m ibnorm_llm train --config" in result.stdout
    assert "6 training runs in all" in result.stdout
    assert not list(out.glob("e2e_*"))


def test_bad_study_file_exits_2_naming_the_key(tmp_path, data_files):
    result = run_script("--study", str(study(tmp_path, data_files, baseline="nope")), "--dry-run")
    assert result.returncode == 2 and "baseline='nope' is not one of the arms" in result.stderr


@pytest.mark.slow
def test_scaled_down_study_trains_selects_and_reports(tmp_path, data_files):
    out = tmp_path / "out"
    path = study(tmp_path, data_files)
    result = run_script("--study", str(path), "--out", str(out), "--launcher", sys.executable, "--jobs", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p.name for p in out.glob("e2e_*") if p.is_dir())
    assert len(runs) == 6  # 2 arms x 2 lrs at seed 0, then the chosen lr of each arm at seed 1
    for name in runs:
        final = read_metrics(out / name / "metrics.jsonl")[-1]
        assert {"eval_loss", "eval_bpb", "test_loss", "test_bpb"} <= set(final)
        assert final["test_loss"] != final["eval_loss"]  # two different splits
        assert (out / name / "checkpoints" / "final" / "model.safetensors").is_file()
    selection = json.loads((out / "selection.json").read_text())
    for arm, chosen in selection.items():
        tuned = {lr: read_metrics(out / f"e2e_{arm}_lr{lr:g}{'_lam4' if arm != 'rmsnorm' else ''}_seed0" /
                                  "metrics.jsonl")[-1]["eval_loss"] for lr in (0.003, 0.01)}
        assert chosen["point"]["optim.lr"] == min(tuned, key=tuned.get)
    report = (out / "report.md").read_text()
    assert report.startswith("# Study e2e") and "## What this study supports" in report.split("## Protocol")[0]
    rows = {r["arm"]: r for r in csv.DictReader(open(out / "report.csv"))}
    assert rows["rmsnorm"]["n"] == "2" and rows["ibnorm_t"]["diff_test_loss_vs_baseline"] != ""
    assert (out / "lr_sensitivity.png").stat().st_size > 5000 and (out / "loss_curves.png").stat().st_size > 5000
    # the runs were monitored: the report links the health report and each arm's heatmaps
    assert "[health/health.md](health/health.md)" in report
    for arm in ("rmsnorm", "ibnorm_t"):
        assert f"- {arm}: [norm](health/heatmaps/{arm}/norm.png)" in report
        assert (out / "health" / "heatmaps" / arm / "block.png").stat().st_size > 5000
    assert "| norm/saturated | – |" in (out / "health" / "health.md").read_text()  # RMSNorm has no saturated range

    # A rerun finds every run finished and trains nothing.
    again = run_script("--study", str(path), "--out", str(out))
    assert again.returncode == 0 and again.stderr.count("finished earlier, skipped") == 6
