"""Shared fixtures for the data tests: a small real corpus (built-in prose) and a 512-token tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ibnorm_llm.config import load_config
from ibnorm_llm.data import builtin_corpus
from ibnorm_llm.data.tokenizer import ensure_special_tokens, train_sentencepiece

DOC_RANGE = slice(100, 400)  # of the built-in corpus: long reference chunks and short docstrings, ~230 KB


@pytest.fixture(scope="session")
def docs() -> list[str]:
    return builtin_corpus()[DOC_RANGE]


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory, docs) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    return path


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, docs) -> Path:
    out = tmp_path_factory.mktemp("tok") / "sp512"
    train_sentencepiece(docs, out, vocab_size=512, model_type="bpe")
    return out


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return ensure_special_tokens(AutoTokenizer.from_pretrained(str(tokenizer_dir)))


@pytest.fixture
def make_cfg(tmp_path, corpus_file, tokenizer_dir):
    """A small files-corpus config: seq_len 32, micro batch 4, cache in tmp_path; extra overrides win."""

    def make(*overrides: str):
        base = [
            "data.source=files",
            f"data.files=[{corpus_file}]",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.seq_len=32",
            "data.val_tokens=256",
            "data.val_fraction=0.1",
            "train.micro_batch_size=4",
            f"tokenizer.name_or_path={tokenizer_dir}",
            "tokenizer.vocab_size=512",
        ]
        return load_config(None, base + list(overrides))

    return make
