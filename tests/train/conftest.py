"""Tiny, fast training runs: a 2-block d_model 64 LLaMA on 300 documents of the built-in corpus."""

from __future__ import annotations

import pytest
from train_helpers import overrides_for


@pytest.fixture
def tiny_overrides(tmp_path, data_files):
    """Overrides for a tiny run under ``tmp_path/runs``; a test appends its own (later ones win)."""
    return overrides_for(tmp_path / "runs", data_files)
