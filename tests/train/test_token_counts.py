"""tokens and tokens_per_s count real target tokens; MFU counts every position (padding costs FLOPs too)."""

from __future__ import annotations

import itertools
import json

import pytest
from train_helpers import tiny_config

from ibnorm_llm.data import IGNORE_INDEX, build_train_loader, load_tokenizer
from ibnorm_llm.train import checkpoint as ckpt
from ibnorm_llm.train.metrics import read_metrics
from ibnorm_llm.train.trainer import train

# One micro batch of 4 rows per step; rows of 256 positions, longer than many of the test documents.
STEPS, MICRO, SEQ = 4, 4, 256


def test_pad_packing_counts_only_real_tokens_and_resumes_exactly(tiny_overrides):
    pad = [*tiny_overrides, "data.packing=pad", f"data.seq_len={SEQ}", f"train.max_steps={STEPS}",
           "train.peak_flops=1.0e+12"]
    full = train(tiny_config([*pad, "run_name=pad", "train.checkpoint_every=2"]))

    cfg = tiny_config([*pad, "run_name=pad"])
    loader = build_train_loader(cfg, load_tokenizer(cfg), rank=0, world_size=1)  # the same batches, from the start
    per_step = [int((next(loader)["labels"] != IGNORE_INDEX).sum()) for _ in range(STEPS)]
    records = {r["step"]: r for r in read_metrics(full.run_dir / "metrics.jsonl")}
    assert [records[s]["tokens"] for s in range(1, STEPS + 1)] == list(itertools.accumulate(per_step))
    assert full.tokens == sum(per_step) == ckpt.read_state(full.final_checkpoint).tokens
    assert sum(per_step) < STEPS * MICRO * SEQ  # the padding is not counted

    flops_per_token = json.loads((full.run_dir / "run.json").read_text())["flops_per_token"]
    for step in range(1, STEPS + 1):  # each record covers one step (log_every=1)
        positions_per_s = records[step]["tokens_per_s"] * MICRO * SEQ / per_step[step - 1]
        assert records[step]["mfu"] == pytest.approx(positions_per_s * flops_per_token / 1e12)

    resumed = train(tiny_config([*pad, "run_name=pad_resumed", f"train.resume={full.run_dir}/checkpoints/step_2"]))
    again = {r["step"]: r for r in read_metrics(resumed.run_dir / "metrics.jsonl")}
    assert sorted(again) == [3, 4]
    for step in again:
        assert again[step]["tokens"] == records[step]["tokens"]
        assert abs(again[step]["loss"] - records[step]["loss"]) <= 1e-6
    assert resumed.tokens == full.tokens
