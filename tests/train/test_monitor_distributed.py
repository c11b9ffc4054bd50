"""The monitor under 2 CPU processes logs the statistics one process logs for the same global batch:
activation statistics pooled over the ranks (FSDP2, ZeRO-3), parameter statistics summed from local
shards (FSDP2); DeepSpeed keeps gradients and the step in its engine, so under ZeRO-3 the
parameter-group statistics are not logged. DDP takes FSDP2's pooling path (the same all-reduces in
train/monitor/tally.py) and computes parameter statistics on its replica as one process does, so it
has no case of its own here."""

from __future__ import annotations

import json
import math

import pytest
from train_helpers import overrides_for, pretrain, tiny_config

from ibnorm_llm.train.trainer import train

pytestmark = pytest.mark.slow

# Global batch 4: one process accumulates 2 micro batches of 2, two processes take one each. Every
# sequence of a micro batch is in the attention statistics (attention_sequences = micro batch size).
SETTINGS = ["train.micro_batch_size=2", "train.global_batch_size=4", "train.max_steps=2", "monitor.every=2",
            "monitor.attention_sequences=2", "model.norm={kind: ibnorm, variant: T, lam: 4.0}",
            "model.qk_norm={kind: rmsnorm}"]
LAUNCH = {
    "fsdp2": ["--config_file", "launch/fsdp_cpu.yaml", "--num_processes", "2"],
    "zero3": ["--config_file", "launch/deepspeed_zero3.yaml", "--num_processes", "2"],
}
ENGINE_OWNED = ("monitor/param/",)
# A median per micro batch: which sequences share a micro batch may differ between the layouts.
NOT_POOLED = ("/massive",)


def _monitor_record(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {k: v for k, v in records[-1].items() if k.startswith("monitor/") and not k.endswith(NOT_POOLED)}


@pytest.fixture(scope="module")
def base(tmp_path_factory, data_files):
    return [*overrides_for(tmp_path_factory.mktemp("monitor_dist"), data_files), *SETTINGS]


@pytest.fixture(scope="module")
def single(base):
    return _monitor_record(train(tiny_config([*base, "run_name=single"])).run_dir)


@pytest.mark.parametrize("strategy", ["fsdp2", "zero3"])
def test_two_processes_log_the_statistics_of_one(base, single, strategy):
    result = pretrain([*base, f"run_name={strategy}"], launch=LAUNCH[strategy])
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tiny_config(base).run_dir.parent / strategy
    assert json.loads((run_dir / "run.json").read_text())["world_size"] == 2
    got = _monitor_record(run_dir)
    expected = single
    if strategy == "zero3":
        expected = {k: v for k, v in single.items() if not any(part in k for part in ENGINE_OWNED)}
    else:
        assert any("/param/" in key for key in got)
    assert got.keys() == expected.keys()
    assert any("/saturated" in key for key in got) and any("/attn_entropy" in key for key in got)
    different = {key: (single[key], got[key]) for key in expected
                 if not math.isclose(single[key], got[key], rel_tol=1e-4, abs_tol=1e-6)}
    assert not different, different
