"""Tiny, fast training runs: a 2-block d_model 64 LLaMA on 300 documents of the built-in corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import overrides_for

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
