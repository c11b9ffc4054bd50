"""Spike detection while training: an injected loss spike is logged with the groups that moved most,
train.skip_spikes leaves the weights and the optimizer state as they were, and a spike on one rank of
two makes both skip."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
from spike_worker import inject
from train_helpers import ROOT, overrides_for, pretrain_env, tiny_config

from ibnorm_llm.train.checkpoint import checkpoints_root, read_state
from ibnorm_llm.train.optim import lr_at, set_lr
from ibnorm_llm.train.trainer import (
    Progress,
    finish,
    periodic_checkpoint,
    periodic_report,
    setup,
    start_progress,
    train_step,
)

SPIKE = ["monitor.spike_window=8", "optim.lr=0.001", "train.max_steps=10", "train.log_every=1"]


def _step(s, progress):
    lr = lr_at(progress.step, s.cfg.optim, s.cfg.train.max_steps)
    set_lr(s.optimizer, lr, s.cfg.optim)
    grad_norm = train_step(s, progress)
    periodic_report(s, progress, lr, grad_norm)


def _records(run_dir):
    return {r["step"]: r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


@pytest.mark.parametrize(("skip", "every"), [(True, 3), (False, 3), (True, 4)],
                         ids=["skip_spikes", "log_only", "skip_on_a_monitor_step"])
def test_an_injected_spike_is_logged_and_skipped_with_the_weights_unchanged(tmp_path, data_files, skip, every):
    cfg = tiny_config([*overrides_for(tmp_path, data_files), *SPIKE, "run_name=spike", f"monitor.every={every}",
                       f"train.skip_spikes={str(skip).lower()}"])
    s = setup(cfg)
    progress = Progress(0, 0, 0)
    s.model.train()
    for _ in range(7):
        _step(s, progress)
    assert progress.spike_skipped == 0
    model = s.strategy.plain_model(s.model)
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer_state = copy.deepcopy(s.optimizer.state_dict())
    handles = inject(s, progress.step + 1)
    _step(s, progress)
    for handle in handles:
        handle.remove()
    unchanged = all(torch.equal(p, weights[name]) for name, p in model.named_parameters())
    assert unchanged == skip
    if skip:
        assert progress.spike_skipped == 1
        after = s.optimizer.state_dict()["state"]
        assert all(torch.equal(after[i]["step"], optimizer_state["state"][i]["step"]) for i in after)
    _step(s, progress)  # the next step trains again
    assert not all(torch.equal(p, weights[name]) for name, p in model.named_parameters())
    _step(s, progress)
    periodic_checkpoint(s, progress)  # step 10 = max_steps: final/
    finish(s, progress)
    # the count is saved with the checkpoint, and a resumed run starts from it
    assert read_state(checkpoints_root(cfg.run_dir) / "final").spike_skipped_steps == int(skip)
    resumed = setup(tiny_config([*overrides_for(tmp_path, data_files), *SPIKE, "run_name=spike",
                                 f"monitor.every={every}", f"train.skip_spikes={str(skip).lower()}", "train.resume=auto"]))
    assert start_progress(resumed).spike_skipped == int(skip)
    finish(resumed, start_progress(resumed))
    records = _records(cfg.run_dir)
    event = records[8]
    assert "loss (rank 0)" in event["spike/kind"] and event["spike/skipped"] is skip
    assert event["spike/value"] > event["spike/mean"] + 6 * event["spike/std"]
    assert event["spike/layers"].count("(x") == 3  # three groups, compared with the last monitor step
    if every == 4:  # the spiking monitor step logs its statistics; no update was applied to measure
        assert event["monitor/param/head/grad_norm"] > records[4]["monitor/param/head/grad_norm"]
        assert "monitor/block/1/attn_entropy" in event and "monitor/param/head/update_ratio" not in event
    assert records[9]["spike_skipped_steps"] == int(skip)
    assert not any("spike/kind" in records[step] for step in records if step != 8)


@pytest.mark.slow
def test_a_spike_on_one_rank_makes_every_fsdp2_rank_skip_with_its_shards_unchanged(tmp_path, data_files):
    overrides = [*overrides_for(tmp_path, data_files), *SPIKE, "run_name=fsdp_spike", "train.skip_spikes=true",
                 "train.micro_batch_size=2", "train.global_batch_size=4"]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "launch/fsdp_cpu.yaml",
               str(ROOT / "tests" / "train" / "spike_worker.py"), "--config", str(ROOT / "configs" / "llama_tiny_rmsnorm.yaml"),
               *overrides]
    result = subprocess.run(command, cwd=ROOT, env=pretrain_env({"SPIKE_RANK": "1", "SPIKE_STEP": "8"}),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "fsdp_spike"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["world_size"] == 2 and run["sharding"] == "fsdp2"
    # each rank holds about half the parameters, and its half did not move on the skipped step
    shards = [json.loads((run_dir / f"spike_step_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(shard["unchanged"] for shard in shards)
    assert 0.3 < shards[0]["elements"] / (shards[0]["elements"] + shards[1]["elements"]) < 0.7
    records = _records(run_dir)
    # rank 0 writes the metrics and its own loss did not spike: it skipped because rank 1's did (the
    # all-reduced gradient norm spikes on both)
    kind = records[8]["spike/kind"]
    assert kind.startswith("loss (rank 1)") and "rank 0" not in kind and records[8]["spike/skipped"] is True
    assert records[10]["spike_skipped_steps"] == 1
    assert "1 of 10 steps skipped" in result.stderr
