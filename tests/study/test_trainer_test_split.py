"""The trainer's final evaluation of the test split (eval.test) and bits per byte in metrics.jsonl."""

from study_helpers import tiny_run_overrides

from ibnorm_llm.config import load_config
from ibnorm_llm.train.metrics import read_metrics
from ibnorm_llm.train.trainer import train


def test_final_record_has_test_split_numbers_and_bits_per_byte(tmp_path, data_files):
    overrides = {**tiny_run_overrides(data_files), "train.max_steps": 4, "train.eval_every": 2}
    cfg = load_config("llama_tiny_rmsnorm.yaml", [
        *(f"{k}={v}" for k, v in overrides.items() if k != "data.files"), f"data.files=[{data_files['corpus']}]",
        f"out_dir={tmp_path}", "data.test_fraction=0.1", "eval.test=true",
    ])
    records = read_metrics(train(cfg).run_dir / "metrics.jsonl")
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(r["eval_bpb"] > 0 for r in evals)
    assert not any("test_loss" in r for r in records[:-1])  # the test split is read once, at the end
    final = records[-1]
    assert final["test_loss"] != final["eval_loss"] and final["test_bpb"] > 0
    # bpb = loss * tokens / (ln 2 * bytes) is below loss / ln 2: every token spells at least one byte.
    assert final["test_bpb"] < final["test_loss"] / 0.6931
