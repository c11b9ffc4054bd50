"""A run's record can be trusted: no silent drift on resume, no silent overwrite, refused starts
change no file, an unreadable newest checkpoint is skipped, file-system failures are one-line
errors before training (docs/reliability.md)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from train_helpers import losses, tiny_config

from ibnorm_llm.config import ConfigError, load_config
from ibnorm_llm.config.resume import SAFE_ON_RESUME
from ibnorm_llm.train import checkpoint as ckpt
from ibnorm_llm.train import run_folder
from ibnorm_llm.train.checkpoint import CheckpointWriteError
from ibnorm_llm.train.run_folder import RunFolderError
from ibnorm_llm.train.trainer import train

IBNORM = ["model.norm.kind=ibnorm", "model.norm.variant=L", "model.norm.lam=4.0"]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (hidden ones too), keyed by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*")) if p.is_file()
    }


@pytest.fixture
def lam4_run(tiny_overrides):
    """A 4-step IBNorm λ=4 run with checkpoints at steps 2 and 4 (final)."""
    cfg = [*tiny_overrides, *IBNORM, "run_name=lam4", "train.max_steps=4", "train.checkpoint_every=2"]
    return cfg, train(tiny_config(cfg))


def test_changed_setting_on_resume_is_refused_naming_both_values_and_changes_no_file(lam4_run):
    cfg, first = lam4_run
    before = snapshot(first.run_dir)
    with pytest.raises(ConfigError) as err:
        train(tiny_config([*cfg, "train.max_steps=6", "train.resume=auto", "model.norm.lam=2", "optim.lr=0.002"]))
    message = str(err.value)
    assert "model.norm.lam 4.0 -> 2.0" in message and "optim.lr 0.003 -> 0.002" in message
    assert "train.resume_allow_changes=[model.norm.lam,optim.lr]" in message and "\n" not in message
    assert "train.max_steps" not in message  # safe to change
    # Another norm kind: refused the same way, and no file of the run folder changes.
    with pytest.raises(ConfigError, match=r"model\.norm\.kind ibnorm -> rmsnorm"):
        train(tiny_config([*cfg, "train.max_steps=6", "train.resume=auto", "model.norm.kind=rmsnorm",
                           "model.norm.variant=null", "model.norm.lam=null"]))
    assert snapshot(first.run_dir) == before


def test_refused_weights_after_allowed_config_change_change_no_file(lam4_run):
    """The weights check comes last (after the model is built): still nothing written."""
    cfg, first = lam4_run
    before = snapshot(first.run_dir)
    with pytest.raises(ConfigError, match="weights do not match"):
        train(tiny_config([*cfg, "train.max_steps=6", "train.resume=auto", "model.d_ff=96",
                           "train.resume_allow_changes=[model.d_ff]"]))
    assert snapshot(first.run_dir) == before


def test_allowed_change_is_recorded_in_run_json_with_its_step(lam4_run):
    cfg, first = lam4_run
    resumed = train(tiny_config([*cfg, "train.max_steps=6", "train.resume=auto", "model.norm.lam=2",
                                 "train.resume_allow_changes=[model.norm.lam]", "train.log_every=2"]))
    run = json.loads((resumed.run_dir / "run.json").read_text())
    assert run["config_changes"] == [{"key": "model.norm.lam", "from": 4.0, "to": 2.0, "step": 4}]
    assert yaml.safe_load((resumed.final_checkpoint / "config.yaml").read_text())["model"]["norm"]["lam"] == 2.0
    # A later resume with the new value needs no opt-in and keeps the record of the change.
    again = train(tiny_config([*cfg, "train.max_steps=7", "train.resume=auto", "model.norm.lam=2"]))
    assert json.loads((again.run_dir / "run.json").read_text())["config_changes"] == run["config_changes"]


def test_allow_changes_names_real_keys():
    with pytest.raises(ConfigError, match=r"'model.norm.lamda' is not a config key or section; did you mean 'model.norm.lam'"):
        load_config(None, ["train.resume_allow_changes=[model.norm.lamda]"])
    assert load_config(None, ["train.resume_allow_changes=[optim]"]).train.resume_allow_changes == ("optim",)
    assert "train.max_steps" in SAFE_ON_RESUME and "model.norm" not in SAFE_ON_RESUME


def test_fresh_start_into_a_used_folder_is_refused_and_overwrite_replaces_it(lam4_run):
    cfg, first = lam4_run
    before = snapshot(first.run_dir)
    with pytest.raises(RunFolderError, match=r"already holds a run \(checkpoints/final, checkpoints/step_2, "
                                             r"metrics.jsonl\): continue it with train.resume=auto, replace it with "
                                             r"train.overwrite=true"):
        train(tiny_config([*cfg, "train.max_steps=3"]))
    assert snapshot(first.run_dir) == before
    with pytest.raises(ConfigError, match="train.overwrite=true and train.resume=auto: choose one"):
        tiny_config([*cfg, "train.overwrite=true", "train.resume=auto"])
    (first.run_dir / "notes.txt").write_text("mine")
    replaced = train(tiny_config([*cfg, "train.max_steps=3", "train.overwrite=true"]))
    assert sorted(losses(replaced.run_dir)) == [1, 2, 3]
    assert sorted(p.name for p in ckpt.checkpoints_root(replaced.run_dir).iterdir()) == ["final", "step_2"]
    assert ckpt.read_state(replaced.final_checkpoint).step == 3
    assert (first.run_dir / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


def test_truncated_newest_checkpoint_falls_back_to_the_previous_with_the_same_losses(tiny_overrides, capsys):
    cfg = [*tiny_overrides, "run_name=cut", "train.max_steps=8", "train.checkpoint_every=2", "train.keep_last=2"]
    full = train(tiny_config(cfg))
    uninterrupted = losses(full.run_dir)
    # The run as a kill during step 7 would leave it, with step_6's weights cut short on disk.
    ckpt_root = ckpt.checkpoints_root(full.run_dir)
    shutil.rmtree(ckpt_root / "final")
    weights = ckpt_root / "step_6" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    capsys.readouterr()
    resumed = train(tiny_config([*cfg, "train.resume=auto"]))
    err = capsys.readouterr().err
    assert "step_6 cannot be resumed from: model.safetensors is truncated" in err
    assert json.loads((resumed.run_dir / "run.json").read_text())["resumed_from"].endswith("step_4")
    again = losses(resumed.run_dir)
    assert sorted(again) == list(range(1, 9))
    for step in range(5, 9):
        assert abs(again[step] - uninterrupted[step]) <= 1e-6, (step, again[step], uninterrupted[step])


def test_no_readable_checkpoint_is_one_line_error_listing_what_was_tried(lam4_run):
    cfg, first = lam4_run
    root = ckpt.checkpoints_root(first.run_dir)
    (root / "final" / "model.safetensors").write_bytes(b"\x00" * 4)
    (root / "step_2" / "trainer_state" / "rank_0.pt").write_bytes(b"not a zip")
    before = snapshot(first.run_dir)
    with pytest.raises(ConfigError) as err:
        train(tiny_config([*cfg, "train.max_steps=6", "train.resume=auto"]))
    message = str(err.value)
    assert "\n" not in message
    assert "tried final (model.safetensors is truncated (4 bytes)); step_2 (trainer_state/rank_0.pt" in message
    assert "train.overwrite=true" in message
    assert snapshot(first.run_dir) == before
    with pytest.raises(ConfigError, match=r"train.resume=.*step_2: the checkpoint cannot be resumed from"):
        train(tiny_config([*cfg, "train.max_steps=6", f"train.resume={root / 'step_2'}"]))


def test_out_dir_that_is_a_file_or_under_one_is_a_one_line_error(tiny_overrides, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    with pytest.raises(RunFolderError, match=rf"out_dir={blocker}: {blocker} is a file, not a folder"):
        train(tiny_config([*tiny_overrides, f"out_dir={blocker}", "train.max_steps=1"]))
    with pytest.raises(RunFolderError, match=rf"cannot create {blocker}/sub/run: {blocker} is a file"):
        train(tiny_config([*tiny_overrides, f"out_dir={blocker}/sub", "train.max_steps=1"]))
    assert blocker.read_text() == "a file"


def test_out_dir_that_cannot_be_written_is_a_one_line_error(tiny_overrides, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: let the check see what a user would
        real_access = os.access
        monkeypatch.setattr(run_folder.os, "access",
                            lambda path, mode: False if Path(path) == locked else real_access(path, mode))
    try:
        with pytest.raises(RunFolderError, match=rf"cannot write to {locked} \(permission denied\); set out_dir to a "
                                                 rf"folder you can write to, or make {locked} writable"):
            train(tiny_config([*tiny_overrides, f"out_dir={locked}", "train.max_steps=1"]))
    finally:
        locked.chmod(0o700)
    assert list(locked.iterdir()) == []


def test_too_little_free_space_for_one_checkpoint_is_refused_before_step_1(tiny_overrides, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(run_folder, "free_bytes", lambda path: seen.append(path) or 10_000)
    with pytest.raises(RunFolderError, match=r"10.0 KB free on the file system of .*, but one checkpoint needs about "
                                             r"[0-9.]+ MB \([0-9,]+ parameters: weights and optimizer state\)"):
        train(tiny_config([*tiny_overrides, "run_name=tiny_disk", "train.max_steps=1"]))
    assert seen and not (tmp_path / "runs" / "tiny_disk").exists()
    n = 1_000_000
    assert run_folder.checkpoint_bytes(n, "fp32", "replicated") == 12 * n
    assert run_folder.checkpoint_bytes(n, "bf16-pure", "replicated") == 6 * n
    assert run_folder.checkpoint_bytes(n, "bf16-pure", "deepspeed-zero3") == 14 * n


def test_failed_checkpoint_write_keeps_the_previous_and_removes_the_temporary(tiny_overrides, monkeypatch):
    calls = {"n": 0}
    real = ckpt.write_training_state

    def disk_full_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(ckpt, "write_training_state", disk_full_on_second)
    cfg = tiny_config([*tiny_overrides, "run_name=full_disk", "train.max_steps=6", "train.checkpoint_every=2"])
    with pytest.raises(CheckpointWriteError, match=r"step_4 failed \(OSError: .*No space left on device\); the "
                                                    r"unfinished .tmp_step_4 was removed .*step_2\) is intact"):
        train(cfg)
    root = ckpt.checkpoints_root(cfg.run_dir)
    assert sorted(p.name for p in root.iterdir()) == ["step_2"]
    assert ckpt.checkpoint_problem(root / "step_2") is None


def test_documented_tokenizer_call_never_prompts_without_the_package(tiny_overrides, tmp_path):
    """docs/training.md's two lines in a fresh process where ibnorm_llm cannot be imported, stdin closed."""
    import subprocess
    import sys

    final = train(tiny_config([*tiny_overrides, "run_name=docs", "train.max_steps=1"])).final_checkpoint
    code = (
        "import sys\nsys.modules['ibnorm_llm'] = None\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"model = AutoModelForCausalLM.from_pretrained({str(final)!r}, trust_remote_code=True)\n"
        f"tok = AutoTokenizer.from_pretrained({str(final)!r}, trust_remote_code=True)\n"
        "print('ok', len(tok), tok.eos_token)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_MODULES_CACHE=str(tmp_path / "hf_modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    (tmp_path / "cwd").mkdir()
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path / "cwd", env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[y/N]" not in proc.stdout + proc.stderr and proc.stdout.startswith("ok 512")


def test_resume_auto_without_a_checkpoint_starts_again(tiny_overrides):
    """A run killed before its first checkpoint left metrics only: train.resume=auto trains it from step 1."""
    cfg = [*tiny_overrides, "run_name=early_kill", "train.max_steps=2"]
    first = train(tiny_config(cfg))
    shutil.rmtree(ckpt.checkpoints_root(first.run_dir))
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(tiny_config(cfg))
    again = train(tiny_config([*cfg, "train.resume=auto"]))
    assert sorted(losses(again.run_dir)) == [1, 2]
    assert json.loads((again.run_dir / "run.json").read_text())["start_step"] == 0
