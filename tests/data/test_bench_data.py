import importlib.util
import json
from pathlib import Path

import pytest


def test_bench_data_quick_reports_both_rates(tmp_path, corpus_file, tokenizer_dir, capsys):
    path = Path(__file__).resolve().parents[2] / "scripts" / "bench_data.py"
    spec = importlib.util.spec_from_file_location("bench_data", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    overrides = [
        "data.source=files", f"data.files=[{corpus_file}]", f"data.cache_dir={tmp_path}", "data.seq_len=64",
        f"tokenizer.name_or_path={tokenizer_dir}", "tokenizer.vocab_size=512", "train.micro_batch_size=2",
    ]
    code = bench.main(["--config", "llama_tiny_rmsnorm.yaml", *overrides, "--quick", "--loader-batches", "5",
                       "--train-steps", "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["seq_len"] == 64 and result["micro_batch_size"] == 2 and result["vocab_size"] == 512
    assert result["loader_tokens_per_s"] > 0 and result["train_tokens_per_s"] > 0
    ratio = result["loader_tokens_per_s"] / result["train_tokens_per_s"]
    assert result["ratio"] == pytest.approx(ratio, rel=0.01, abs=0.1)
