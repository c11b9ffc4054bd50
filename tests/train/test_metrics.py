import json
import math

import pytest
import torch
import torch.nn.functional as F
from train_helpers import tiny_config

from ibnorm_llm.train.metrics import (
    MetricsWriter,
    flops_per_token,
    mfu,
    peak_flops_for,
    peak_flops_notice,
    read_metrics,
)

TINY_MODEL = ["model.preset=llama-tiny", "model.d_model=64", "model.n_layers=2", "model.n_heads=2", "model.d_ff=128"]


def test_flops_per_token_formula():
    # 6N + 12 * n_layers * d_model * seq_len
    assert flops_per_token(1_000_000, 2, 64, 128) == 6_000_000 + 12 * 2 * 64 * 128
    # llama-60m-sized example: attention term is small next to 6N
    assert flops_per_token(58_100_000, 8, 512, 256) == 348_600_000 + 12_582_912


def test_peak_table_and_override():
    assert peak_flops_for("NVIDIA H200") == 989e12
    assert peak_flops_for("NVIDIA H100 PCIe") == 756e12
    assert peak_flops_for("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops_for("cpu") is None
    assert peak_flops_for("cpu", override=1e12) == 1e12


def test_mfu():
    assert mfu(1000.0, 6_000_000, 12e9, 1) == pytest.approx(0.5)
    assert mfu(1000.0, 6_000_000, 6e9, 2) == pytest.approx(0.5)
    assert mfu(1000.0, 6_000_000, None, 1) is None


def test_metrics_writer_truncates_after_resume_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = MetricsWriter(path, enabled=True)
    for step in (1, 2, 3, 4):
        writer.write({"step": step, "loss": float("nan") if step == 4 else 1.0 / step})
    writer.close()
    assert json.loads(path.read_text().splitlines()[-1])["loss"] == "nan"
    MetricsWriter(path, enabled=True).truncate_after(2)
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    MetricsWriter(tmp_path / "other.jsonl", enabled=False).write({"step": 1})
    assert not (tmp_path / "other.jsonl").exists()


def test_peak_flops_notice_only_for_gpus_missing_from_the_table():
    notice = peak_flops_notice("cuda:0", "NVIDIA Future X9", None)
    assert "train.peak_flops" in notice and "NVIDIA Future X9" in notice
    assert peak_flops_notice("cuda:0", "NVIDIA H200", peak_flops_for("NVIDIA H200")) is None
    assert peak_flops_notice("cuda:0", "NVIDIA Future X9", 1e15) is None  # train.peak_flops set
    assert peak_flops_notice("cpu", "cpu", None) is None  # expected on CPU: stay silent


def test_merge_into_adds_to_the_last_record(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = MetricsWriter(path, enabled=True)
    writer.write({"step": 1, "loss": 2.0})
    writer.write({"step": 2, "loss": float("nan")})
    writer.merge_into(2, {"eval/hellaswag": 0.25})
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": "nan", "eval/hellaswag": 0.25}]
    writer.merge_into(3, {"eval/hellaswag": 0.5})  # a step that was never logged gets a record of its own
    assert read_metrics(path)[-1] == {"step": 3, "eval/hellaswag": 0.5}
    assert not path.with_name("metrics.jsonl.tmp").exists()


def test_held_out_loss_is_one_computation_for_trainer_and_perplexity():
    from accelerate import Accelerator

    from ibnorm_llm.evaluation.harness.perplexity import mean_loss
    from ibnorm_llm.models import build_model
    from ibnorm_llm.train.trainer import evaluate

    torch.manual_seed(0)
    model = build_model(tiny_config(TINY_MODEL).model, 512)
    ids = torch.randint(0, 512, (3, 3, 16))  # 3 batches of (B=3, T=16)
    batches = []
    for i, rows in enumerate(ids):
        labels = rows.clone()
        labels[0, 10 + i:] = -100  # padding at the end of one row, a different amount per batch
        batches.append({"input_ids": rows, "labels": labels})
    batches.append({"input_ids": ids[0], "labels": torch.full_like(ids[0], -100)})  # no targets: adds nothing
    model.train()

    with torch.no_grad():
        total, count = 0.0, 0
        for batch in batches:  # the definition: summed next-token cross entropy over real targets
            logits = model(input_ids=batch["input_ids"]).logits[:, :-1]
            targets = batch["labels"][:, 1:]
            total += float(F.cross_entropy(logits.reshape(-1, 512).double(), targets.reshape(-1), reduction="sum"))
            count += int((targets != -100).sum())

    loss, ppl = evaluate(model, batches, Accelerator(cpu=True))
    assert model.training  # the trainer's model goes back to training mode
    assert loss == pytest.approx(total / count, rel=1e-5) and ppl == pytest.approx(math.exp(loss))
    assert mean_loss(model, batches, "cpu") == (loss, count)
