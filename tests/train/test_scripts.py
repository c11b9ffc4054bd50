"""Smoke runs of the demo (a study) and the training benchmark, and loss falling on the shipped tiny configs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from train_helpers import ROOT, losses

from ibnorm_llm.config import load_config
from ibnorm_llm.train.trainer import train


def _data_overrides(data_files):
    """Point a shipped config at the small test corpus and tokenizer (the built-in one takes longer to build)."""
    return [
        "data.source=files", f"data.files=[{data_files['corpus']}]", f"data.cache_dir={data_files['cache']}",
        "data.seq_len=32", "data.val_tokens=256", "data.val_fraction=0.1",
        f"tokenizer.name_or_path={data_files['tokenizer']}", "tokenizer.vocab_size=512",
    ]


@pytest.mark.parametrize("config", ["llama_tiny_ibnorm_l.yaml", "gpt2_tiny_layernorm.yaml"])
def test_loss_falls_on_shipped_tiny_config(config, tmp_path, data_files):
    cfg = load_config(config, [*_data_overrides(data_files), f"out_dir={tmp_path}", "train.max_steps=25",
                               "train.micro_batch_size=8", "optim.warmup_steps=5", "train.log_every=1", "train.checkpoint_every=0",
                               "train.eval_every=0", "logging.progress=false"])
    curve = losses(train(cfg).run_dir)
    assert sum(curve[s] for s in range(21, 26)) / 5 < curve[1] - 0.5, curve


TINY_DEMO = ["model.d_model=64", "model.n_layers=2", "model.n_heads=2", "model.d_ff=128", "train.micro_batch_size=4",
             "train.eval_batches=2", "logging.progress=false"]


@pytest.mark.slow
def test_demo_is_the_demo_study_and_writes_its_report(tmp_path, data_files):
    """The demo's trainings and report (its evaluation list: tests/study/test_protocol.py; the shipped
    studies/demo.yaml plans: tests/study/test_shipped_studies.py)."""
    out = tmp_path / "demo"

    def demo(*args):
        return subprocess.run([sys.executable, *args, "--out", str(out), "--no-leaderboard", "--jobs", "2",
                               *_data_overrides(data_files), *TINY_DEMO], cwd=ROOT, capture_output=True, text=True,
                              timeout=600)

    result = demo("scripts/demo.py", "--steps", "3")  # the old path still works
    assert result.returncode == 0, result.stderr[-3000:]
    report = (out / "report.md").read_text()
    for arm in ("rmsnorm", "ibnorm_s", "ibnorm_l", "ibnorm_t"):
        assert f"| {arm}" in report
        assert (out / f"demo_{arm}_default_seed0" / "checkpoints" / "final" / "model.safetensors").is_file()
    assert "ibnorm_t vs rmsnorm: not supported either way" in report  # one seed supports nothing
    assert "No grid is tuned: every arm runs its own settings at seeds 0 (n=1)" in report
    assert (out / "loss_curves.png").stat().st_size > 10_000
    # A rerun trains nothing: the finished runs are the planned ones.
    again = demo("-m", "ibnorm_llm", "demo", "--steps", "3")
    assert again.returncode == 0 and again.stderr.count("finished earlier, skipped") == 4, again.stderr[-2000:]
    # Other settings are refused instead of silently reusing runs trained differently.
    other = demo("-m", "ibnorm_llm", "demo", "--steps", "4")
    assert other.returncode == 2 and "train.max_steps 3 -> 4" in other.stderr, other.stderr[-2000:]


@pytest.mark.slow
def test_bench_train_quick_prints_ratio(data_files):
    result = subprocess.run(
        [sys.executable, "scripts/bench_train.py", *_data_overrides(data_files), "train.peak_flops=1.0e+12", "--quick",
         "--norms", "rmsnorm", "ibnorm_l"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(("plain loop", "our trainer"))]
    assert [" ".join(r[:3]) for r in rows] == ["plain loop, stock", "our trainer, rmsnorm", "our trainer, ibnorm_l"]
    assert rows[1][-3].endswith("x") and rows[2][-2].endswith("x")  # vs stock loop, vs rmsnorm
    # MFU of our trainer's runs, given a peak (the plain loop has none)
    assert all(r[-1].endswith("%") and float(r[-1][:-1]) > 0 for r in rows[1:]) and rows[0][-1].endswith("x")
    assert float(rows[0][4]) > 0 and float(rows[1][3]) > 0 and float(rows[2][3]) > 0  # tokens/s columns
    # the interleaved table: each norm's step time, and its ratio to the baseline (1.000x for itself)
    interleaved = result.stdout.split("interleaved model steps")[1].splitlines()[2:]
    steps = {line.split()[0]: line.split()[1:] for line in interleaved if line.strip()}
    assert steps.keys() == {"rmsnorm", "ibnorm_l"}
    assert steps["rmsnorm"][1] == "1.000x" and float(steps["ibnorm_l"][0]) > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="bf16 is refused only without CUDA")
def test_bench_train_refuses_bf16_without_cuda():
    result = subprocess.run([sys.executable, "scripts/bench_train.py", "--quick", "train.precision=bf16-mixed"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "train.precision=bf16-mixed on a machine without a CUDA GPU" in result.stderr
    assert "Use train.precision=fp32 on CPU" in result.stderr
