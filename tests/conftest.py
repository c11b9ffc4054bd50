"""Fixtures shared across test folders."""

import pytest
import torch

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
