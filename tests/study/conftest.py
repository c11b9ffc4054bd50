"""Study test fixtures: a study file writer and a tiny corpus with its tokenizer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from study_helpers import write_study


@pytest.fixture
def study_file(tmp_path) -> Callable[..., Path]:
    return lambda **changes: write_study(tmp_path / "study.yaml", **changes)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    """300 built-in documents as a JSONL corpus and a 512-token SentencePiece tokenizer."""
    from ibnorm_llm.data import builtin_corpus
    from ibnorm_llm.data.tokenizer import train_sentencepiece

    base = tmp_path_factory.mktemp("study_data")
    corpus = base / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in builtin_corpus()[:300]))
    train_sentencepiece(builtin_corpus()[:300], base / "sp512", vocab_size=512, model_type="bpe")
    return {"corpus": corpus, "tokenizer": base / "sp512", "cache": base / "cache"}
