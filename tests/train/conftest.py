"""Tiny, fast training runs: a 2-block d_model 64 LLaMA on 300 documents of the built-in corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ibnorm_llm.data import builtin_corpus
from ibnorm_llm.data.tokenizer import train_sentencepiece


@pytest.fixture(scope="session")
def data_files(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("train_data")
    corpus = base / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in builtin_corpus()[:300]))
    train_sentencepiece(builtin_corpus()[:300], base / "sp512", vocab_size=512, model_type="bpe")
    return {"corpus": corpus, "tokenizer": base / "sp512", "cache": base / "cache"}


@pytest.fixture
def tiny_overrides(tmp_path, data_files):
    """Overrides for a tiny run under ``tmp_path/runs``; a test appends its own (later ones win)."""
    return overrides_for(tmp_path / "runs", data_files)


def overrides_for(out_dir: Path, data_files: dict[str, Path]) -> list[str]:
    return [
        f"out_dir={out_dir}",
        "model.preset=llama-tiny", "model.d_model=64", "model.n_layers=2", "model.n_heads=2", "model.d_ff=128",
        "data.source=files", f"data.files=[{data_files['corpus']}]", f"data.cache_dir={data_files['cache']}",
        "data.seq_len=32", "data.val_tokens=256", "data.val_fraction=0.1",
        f"tokenizer.name_or_path={data_files['tokenizer']}", "tokenizer.vocab_size=512",
        "optim.lr=0.003", "optim.warmup_steps=2", "optim.min_lr_ratio=0.1",
        "train.micro_batch_size=4", "train.log_every=1", "train.eval_every=0", "train.eval_batches=2",
        "train.checkpoint_every=0", "logging.wandb='off'", "logging.progress=false",
    ]
