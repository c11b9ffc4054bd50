"""Study test fixtures: a study file writer (the tiny corpus and tokenizer are tests/conftest.py's data_files)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from study_helpers import write_study


@pytest.fixture
def study_file(tmp_path) -> Callable[..., Path]:
    return lambda **changes: write_study(tmp_path / "study.yaml", **changes)
