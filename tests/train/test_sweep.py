"""`ibnorm-llm sweep`: a grid over config keys written as a study file and run by the study runner."""

import subprocess
import sys

import yaml

from ibnorm_llm.cli import run_command


def test_plan_names_arms_after_settings_and_writes_a_study_file(tmp_path, capsys):
    out = tmp_path / "sw"
    code = run_command("sweep", ["--config", "llama60m_ibnorm_l.yaml", "--grid", "model.norm.variant=S,T",
                                 "model.norm.lam=2,4.5", "train.seed=0,1", "--set", "train.max_steps=7", "--out", str(out)])
    assert code == 0
    study = yaml.safe_load((out / "study.yaml").read_text())
    assert study["seeds"] == [0, 1] and study["overrides"] == {"train.max_steps": 7}
    assert study["baseline"] == "vS_lam2"
    plan = capsys.readouterr().out
    assert "4 arms, baseline vS_lam2, seeds [0, 1]" in plan
    assert "llama60m_ibnorm_l_sweep_vT_lam4.5_default_seed0" in plan and "-m ibnorm_llm train --config" in plan
    assert not (out / "configs").exists()  # the plan trains nothing and writes no run configs

    # The study file runs as any study: the same plan from `ibnorm-llm study`.
    assert run_command("study", ["--study", str(out / "study.yaml"), "--out", str(out), "--dry-run"]) == 0
    assert "llama60m_ibnorm_l_sweep_vT_lam4.5_default_seed0" in capsys.readouterr().out


def test_bad_grid_fails_before_writing_anything(tmp_path, capsys):
    code = run_command("sweep", ["--config", "llama60m_ibnorm_l.yaml", "--grid", "model.norm.lamb=2,3",
                                 "--out", str(tmp_path / "a")])
    assert code == 2 and "did you mean 'model.norm.lam'" in capsys.readouterr().err
    code = run_command("sweep", ["--config", "llama60m_ibnorm_l.yaml", "--grid", "model.norm.variant=S,Q",
                                 "--out", str(tmp_path / "b")])
    assert code == 2 and "must be one of S, L, T" in capsys.readouterr().err
    code = run_command("sweep", ["--config", "llama60m_ibnorm_l.yaml", "--grid", "train.seed=0,1",
                                 "--out", str(tmp_path / "c")])
    assert code == 2 and "only train.seed is swept" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")


def test_run_stops_at_the_first_failed_training(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ibnorm_llm", "sweep", "--config", "llama_tiny_ibnorm_l.yaml", "--grid",
         "model.norm.lam=2,4", "--out", str(tmp_path / "bad"), "--launcher", "false", "--run"],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert "run llama_tiny_ibnorm_l_sweep_lam2_default_seed0 failed (exit status 1)" in result.stderr
    assert "lam4" not in result.stderr  # the second point never started
