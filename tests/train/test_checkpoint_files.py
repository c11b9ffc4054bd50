"""Checkpoint folder bookkeeping without training: latest, pruning, interrupted-write cleanup."""

import json

from ibnorm_llm.train import checkpoint as ckpt


def fake_checkpoint(root, name, step, complete=True):
    state_dir = root / name / ckpt.STATE_DIR
    state_dir.mkdir(parents=True)
    state = ckpt.TrainerState(step=step, tokens=step * 10, skipped_steps=0, world_size=1, grad_accum=1,
                              micro_batch_size=1)
    (state_dir / "trainer.json").write_text(json.dumps(state.__dict__))
    if complete:
        (state_dir / ckpt.COMPLETE).write_text("")
    return root / name


def test_latest_ignores_incomplete_and_hidden(tmp_path):
    root = ckpt.checkpoints_root(tmp_path)
    assert ckpt.find_latest(tmp_path) is None
    fake_checkpoint(root, "step_2", 2)
    fake_checkpoint(root, "step_4", 4)
    fake_checkpoint(root, "step_6", 6, complete=False)  # e.g. copied by hand, half-way
    fake_checkpoint(root, ".tmp_step_8", 8)
    assert ckpt.find_latest(tmp_path).name == "step_4"
    fake_checkpoint(root, "final", 4)
    assert ckpt.find_latest(tmp_path).name == "final"  # final wins a tie


def test_prune_keeps_newest_and_final(tmp_path):
    root = ckpt.checkpoints_root(tmp_path)
    for step in (2, 4, 6, 10):
        fake_checkpoint(root, f"step_{step}", step)
    fake_checkpoint(root, "final", 12)
    ckpt.prune(tmp_path, keep_last=2)
    assert sorted(p.name for p in root.iterdir()) == ["final", "step_10", "step_6"]


def test_remove_stale_restores_a_checkpoint_moved_aside(tmp_path):
    root = ckpt.checkpoints_root(tmp_path)
    fake_checkpoint(root, ".tmp_step_4", 4)          # unfinished write
    fake_checkpoint(root, ".old_final", 6)           # crash between the two renames: final/ is missing
    fake_checkpoint(root, "step_2", 2)
    fake_checkpoint(root, ".old_step_2", 2)          # replacement landed: the old copy is garbage
    ckpt.remove_stale(tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["final", "step_2"]
    assert ckpt.read_state(root / "final").step == 6
