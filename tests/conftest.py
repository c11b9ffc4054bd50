"""Fixtures shared across test folders."""

import json
from pathlib import Path

import pytest
import torch

from ibnorm_llm.data import builtin_corpus
from ibnorm_llm.data.tokenizer import train_sentencepiece
from ibnorm_llm.evaluation.harness.offline import OFFLINE_ENV


@pytest.fixture
def restore_globals(monkeypatch):
    """The in-process leaderboard switches the process to offline mode and extends nltk's search
    path; undo both after the test. Tiny models run on one thread (OpenMP spinning on a shared CPU
    costs far more than it gains)."""
    import nltk

    for key in OFFLINE_ENV:
        monkeypatch.setenv(key, "1")
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skipped, with the reason, where there is none (CI)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run scripts/gpu_check.sh on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_files(tmp_path_factory) -> dict[str, Path]:
    """300 built-in documents as a JSONL corpus and a 512-token SentencePiece tokenizer, one per session."""
    base = tmp_path_factory.mktemp("train_data")
    corpus = base / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in builtin_corpus()[:300]))
    train_sentencepiece(builtin_corpus()[:300], base / "sp512", vocab_size=512, model_type="bpe")
    return {"corpus": corpus, "tokenizer": base / "sp512", "cache": base / "cache"}
