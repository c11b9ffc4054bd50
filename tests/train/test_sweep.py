import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def sweep(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "scripts/sweep.py", *args], cwd=cwd, capture_output=True, text=True)


def test_writes_one_validated_config_per_point_named_after_settings(tmp_path):
    out = tmp_path / "sw"
    result = sweep("--config", "llama60m_ibnorm_l.yaml", "--grid", "model.norm.variant=S,T", "model.norm.lam=2,4.5",
                   "train.seed=0,1", "--set", "train.max_steps=7", "--out", str(out))
    assert result.returncode == 0, result.stderr
    names = sorted(p.stem for p in out.glob("*.yaml"))
    assert len(names) == 8
    assert "llama60m_ibnorm_vS_lam2_seed0" in names and "llama60m_ibnorm_vT_lam4.5_seed1" in names
    cfg = yaml.safe_load((out / "llama60m_ibnorm_vT_lam4.5_seed1.yaml").read_text())
    assert cfg["model"]["norm"]["variant"] == "T" and cfg["model"]["norm"]["lam"] == 4.5
    assert cfg["train"]["seed"] == 1 and cfg["train"]["max_steps"] == 7
    assert cfg["run_name"] == "llama60m_ibnorm_vT_lam4.5_seed1"
    assert len(result.stdout.splitlines()) == 8 and "scripts/pretrain.py --config" in result.stdout


def test_bad_grid_fails_before_writing_anything(tmp_path):
    result = sweep("--config", "llama60m_ibnorm_l.yaml", "--grid", "model.norm.lamb=2,3", "--out", str(tmp_path / "a"))
    assert result.returncode == 2 and "did you mean 'model.norm.lam'" in result.stderr
    result = sweep("--config", "llama60m_ibnorm_l.yaml", "--grid", "model.norm.variant=S,Q", "--out", str(tmp_path / "b"))
    assert result.returncode == 2 and "must be one of S, L, T" in result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_run_stops_at_first_failure(tmp_path):
    ok = sweep("--config", "llama_tiny_ibnorm_l.yaml", "--grid", "train.seed=0,1", "--out", str(tmp_path / "ok"),
               "--launcher", "true", "--run")
    assert ok.returncode == 0 and "[2/2]" in ok.stderr
    bad = sweep("--config", "llama_tiny_ibnorm_l.yaml", "--grid", "train.seed=0,1", "--out", str(tmp_path / "bad"),
                "--launcher", "false", "--run")
    assert bad.returncode == 1
    assert "run llama_tiny_ibnorm_l_seed0 failed with exit status 1" in bad.stderr
    assert "Not started: llama_tiny_ibnorm_l_seed1" in bad.stderr and "[2/2]" not in bad.stderr


def test_commands_file_resumes_and_works_from_any_directory(tmp_path):
    recorder = tmp_path / "recorder.py"
    log = tmp_path / "calls.txt"
    recorder.write_text(f"import os, sys\nopen({str(log)!r}, 'a').write(os.getcwd() + ' ' + ' '.join(sys.argv[1:]) + '\\n')\n")
    workdir = tmp_path / "project"
    workdir.mkdir()
    out = tmp_path / "sw"
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "sweep.py"), "--config", "llama_tiny_ibnorm_l.yaml",
                           "--grid", "train.seed=0,1", "--out", str(out), "--launcher", f"{sys.executable} {recorder}"],
                          cwd=workdir, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert subprocess.run(["sh", str(out / "commands.sh")], cwd=elsewhere).returncode == 0
    calls = log.read_text().splitlines()
    assert calls == [f"{workdir} --config {out}/llama_tiny_ibnorm_l_seed{seed}.yaml train.resume=auto" for seed in (0, 1)]
    # The default launcher names the script by its absolute path.
    listed = sweep("--config", "llama_tiny_ibnorm_l.yaml", "--grid", "train.seed=0", "--out", str(tmp_path / "d"))
    assert f"{ROOT / 'scripts' / 'pretrain.py'} --config" in listed.stdout and "train.resume=auto" in listed.stdout
