"""Single-process training: loss falls, exact resume, non-finite handling, early refusal of bad configs."""

from __future__ import annotations

import json
import math
import platform
from types import SimpleNamespace

import pytest
import torch
from train_helpers import losses, tiny_config

from ibnorm_llm.config import ConfigError
from ibnorm_llm.models import load_model
from ibnorm_llm.train import checkpoint as ckpt
from ibnorm_llm.train import trainer
from ibnorm_llm.train.metrics import read_metrics
from ibnorm_llm.train.trainer import NonFiniteError, train


def test_loss_falls_and_run_is_recorded(tiny_overrides):
    result = train(tiny_config([*tiny_overrides, "run_name=falls", "train.max_steps=40", "train.eval_every=20"]))
    curve = losses(result.run_dir)
    assert len(curve) == 40
    assert sum(curve[s] for s in range(36, 41)) / 5 < curve[1] - 1.0
    assert result.eval_loss is not None and result.eval_loss < curve[1]
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu", "skipped_steps", "world_size"} <= set(
        records[0]
    )
    assert records[-1]["tokens"] == 40 * 4 * 32 and records[-1]["mfu"] is None  # CPU without train.peak_flops
    assert "eval_ppl" in records[19] and math.isclose(records[19]["eval_ppl"], math.exp(records[19]["eval_loss"]))
    run = json.loads((result.run_dir / "run.json").read_text())
    assert (run["world_size"], run["ranks"], run["distributed_type"]) == (1, [0], "NO")
    # a CPU run keeps freed memory for reuse where the C library is glibc (cpu_memory.py)
    assert run["processes"][0]["cpu_malloc"] in ({"reuse"} if platform.libc_ver()[0] == "glibc" else {"unavailable"})
    assert (result.run_dir / "config.yaml").is_file()
    final = result.final_checkpoint
    assert ckpt.is_complete(final) and (final / "config.yaml").is_file() and (final / "tokenizer_config.json").is_file()
    model = load_model(final)  # the checkpoint is a plain Hugging Face model directory
    assert model.config.num_hidden_layers == 2 and torch.isfinite(next(model.parameters())).all()


def test_resume_from_checkpoint_gives_identical_losses(tiny_overrides):
    full = train(tiny_config([*tiny_overrides, "run_name=full", "train.max_steps=8", "train.checkpoint_every=4"]))
    resumed = train(tiny_config([
        *tiny_overrides, "run_name=resumed", "train.max_steps=8", f"train.resume={full.run_dir}/checkpoints/step_4",
    ]))
    a, b = losses(full.run_dir), losses(resumed.run_dir)
    assert sorted(b) == [5, 6, 7, 8]
    for step in b:
        assert abs(a[step] - b[step]) <= 1e-6, (step, a[step], b[step])
    run = json.loads((resumed.run_dir / "run.json").read_text())
    assert run["start_step"] == 4 and run["resumed_from"].endswith("step_4")


def test_resume_auto_picks_newest_complete_and_keeps_last_k(tiny_overrides):
    cfg = [*tiny_overrides, "run_name=auto", "train.checkpoint_every=2", "train.keep_last=2"]
    first = train(tiny_config([*cfg, "train.max_steps=6"]))
    root = ckpt.checkpoints_root(first.run_dir)
    assert sorted(p.name for p in root.iterdir()) == ["final", "step_2", "step_4"]
    continued = train(tiny_config([*cfg, "train.max_steps=8", "train.resume=auto"]))
    assert sorted(losses(continued.run_dir)) == list(range(1, 9))  # steps 1-6 kept, 7-8 appended
    assert ckpt.read_state(continued.final_checkpoint).step == 8


def test_bad_configs_fail_before_any_work(tiny_overrides, tmp_path):
    with pytest.raises(ConfigError, match="train.precision=bf16-pure on a machine without a CUDA GPU"):
        train(tiny_config([*tiny_overrides, "run_name=bf16", "train.precision=bf16-pure"]))
    with pytest.raises(ConfigError, match="train.global_batch_size.*not divisible"):
        train(tiny_config([*tiny_overrides, "run_name=batch", "train.global_batch_size=6"]))
    with pytest.raises(ConfigError, match="not a complete checkpoint"):
        train(tiny_config([*tiny_overrides, "run_name=nockpt", f"train.resume={tmp_path}/nowhere"]))
    assert not (tmp_path / "runs").exists()


def _poison_step(monkeypatch, bad_call: int):
    """Make the forward pass of micro step ``bad_call`` (1-based) return NaN activations."""
    build = trainer.build_model

    def build_with_nan(*args, **kwargs):
        model = build(*args, **kwargs)
        calls = {"n": 0}

        def hook(module, inputs, output):
            calls["n"] += module.training
            return output * float("nan") if module.training and calls["n"] == bad_call else output

        model.get_input_embeddings().register_forward_hook(hook)
        return model

    monkeypatch.setattr(trainer, "build_model", build_with_nan)


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(tiny_overrides, monkeypatch):
    _poison_step(monkeypatch, bad_call=3)
    cfg = tiny_config([*tiny_overrides, "run_name=nan", "train.max_steps=6", "train.checkpoint_every=2"])
    with pytest.raises(NonFiniteError, match=r"non-finite loss=nan at step 3.*step_2"):
        train(cfg)
    assert ckpt.find_latest(cfg.run_dir).name == "step_2"


def test_skip_nonfinite_skips_and_counts(tiny_overrides, monkeypatch):
    _poison_step(monkeypatch, bad_call=3)
    result = train(tiny_config([*tiny_overrides, "run_name=skip", "train.max_steps=5", "train.skip_nonfinite=true"]))
    records = {r["step"]: r for r in map(json.loads, (result.run_dir / "metrics.jsonl").read_text().splitlines())}
    assert records[2]["skipped_steps"] == 0 and records[5]["skipped_steps"] == 1
    assert all(math.isfinite(records[s]["loss"]) for s in (1, 2, 4, 5))
    assert ckpt.read_state(result.final_checkpoint).skipped_steps == 1


def test_learnable_lambda_and_mfu_are_logged(tiny_overrides):
    result = train(tiny_config([
        *tiny_overrides, "run_name=lam", "train.max_steps=2", "model.norm.kind=ibnorm", "model.norm.variant=L",
        "model.norm.lam=4.0", "model.norm.learnable_lam=true", "train.peak_flops=1.0e+12",
    ]))
    record = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    lams = {k: v for k, v in record.items() if k.startswith("lam/")}
    assert len(lams) == 2 * 2 + 1  # two norms per block and the final norm
    assert all(abs(v - 4.0) < 0.1 for v in lams.values())
    run = json.loads((result.run_dir / "run.json").read_text())
    assert record["mfu"] == pytest.approx(record["tokens_per_s"] * run["flops_per_token"] / 1e12)


@pytest.mark.slow
def test_wandb_fresh_runs_get_new_ids_and_a_resume_continues(tiny_overrides, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = [*tiny_overrides, "run_name=wb", "logging.wandb=auto", "train.max_steps=1"]  # auto = offline here

    def wandb_id(result):
        return json.loads((result.run_dir / "run.json").read_text())["wandb_id"]

    first = wandb_id(train(tiny_config(cfg)))
    # a fresh run replacing the name must not append to the first's history
    second_run = train(tiny_config([*cfg, "train.overwrite=true"]))
    second = wandb_id(second_run)
    resumed = wandb_id(train(tiny_config([*cfg, "train.max_steps=2", "train.resume=auto"])))
    assert first.startswith("wb-") and second.startswith("wb-") and first != second
    assert resumed == second
    # Each launch writes an offline folder holding run-<id>.wandb; the overwrite removed the first run's.
    run_files = list((second_run.run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert sorted(p.stem.removeprefix("run-") for p in run_files) == [second, second]
    # A start from another run's checkpoint is a new run: a new id.
    other = train(tiny_config([
        *tiny_overrides, "run_name=wb_other", "logging.wandb=auto", "train.max_steps=3",
        f"train.resume={second_run.final_checkpoint}",
    ]))
    assert wandb_id(other).startswith("wb_other-")


def test_periodic_ib_analysis_is_logged(tiny_overrides):
    result = train(tiny_config([
        *tiny_overrides, "run_name=analysis", "train.max_steps=4", "train.log_every=4", "analysis.every=2",
        "analysis.n_tokens=64",
    ]))
    records = {r["step"]: r for r in (json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines())}
    assert sorted(records) == [2, 4]  # analysis steps are logged even between log_every steps
    for record in records.values():
        assert {"analysis/ib/0", "analysis/ib/1", "analysis/i_target/0"} <= set(record)
        assert any(key.startswith("analysis/kurtosis_after/") for key in record)
        assert all(math.isfinite(record[key]) for key in record if key.startswith("analysis/ib/"))


def test_resume_at_max_steps_without_final_is_refused_early(tiny_overrides, tmp_path):
    first = train(tiny_config([*tiny_overrides, "run_name=atmax", "train.max_steps=4", "train.checkpoint_every=2"]))
    step_2 = first.run_dir / "checkpoints" / "step_2"
    with pytest.raises(ConfigError, match=r"at step 2, already at train.max_steps=2.*Raise train.max_steps above 2"):
        train(tiny_config([*tiny_overrides, "run_name=elsewhere", "train.max_steps=2", f"train.resume={step_2}"]))
    assert not (tmp_path / "runs" / "elsewhere").exists()  # refused before the run folder or model exist
    # With its own final/ in place there is nothing to do and final/ is the answer.
    again = train(tiny_config([*tiny_overrides, "run_name=atmax", "train.max_steps=4", "train.resume=auto"]))
    assert again.steps == 4 and ckpt.read_state(again.final_checkpoint).step == 4


def test_gpu_missing_from_peak_table_gets_one_notice(tiny_overrides, monkeypatch, capsys):
    real_describe = trainer.describe

    def on_unknown_gpu(accelerator):
        return {**real_describe(accelerator), "device": "cuda:0", "device_name": "NVIDIA Future X9"}

    monkeypatch.setattr(trainer, "describe", on_unknown_gpu)
    result = train(tiny_config([*tiny_overrides, "run_name=nopeak", "train.max_steps=2"]))
    err = capsys.readouterr().err
    assert err.count("MFU not logged") == 1 and "NVIDIA Future X9" in err and "train.peak_flops" in err
    assert [r["mfu"] for r in read_metrics(result.run_dir / "metrics.jsonl")] == [None, None]


def test_eval_suite_is_refused_under_a_multi_process_launch(tiny_overrides, monkeypatch, tmp_path):
    two_ranks = SimpleNamespace(is_main_process=True, num_processes=2, process_index=0)
    monkeypatch.setattr(trainer, "build_accelerator", lambda cfg, launch: two_ranks)
    with pytest.raises(ConfigError, match=r"eval.suite=v1 .* 2 processes.*ibnorm-llm eval --checkpoint"):
        train(tiny_config([*tiny_overrides, "run_name=multi", "eval.suite=v1"]))
    assert not (tmp_path / "runs").exists()


def test_held_out_evaluation_reads_train_eval_batches_micro_batches(monkeypatch, tiny_overrides):
    seen = []
    real = trainer.evaluate_split

    def spy(model, batches, accelerator, byte_table, prefix):
        seen.append((prefix, len(batches)))
        return real(model, batches, accelerator, byte_table, prefix)

    monkeypatch.setattr(trainer, "evaluate_split", spy)
    cfg = tiny_config([*tiny_overrides, "run_name=eval_batches", "train.max_steps=2", "train.eval_every=1",
                       "train.eval_batches=1", "train.micro_batch_size=2"])
    assert len(trainer.build_val_batches(cfg, trainer.load_tokenizer(cfg), rank=0, world_size=1)) > 1
    train(cfg)
    assert seen == [("eval", 1), ("eval", 1)]
