import json

import pytest

from ibnorm_llm.train.metrics import MetricsWriter, flops_per_token, mfu, peak_flops_for, read_metrics


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
