"""punkt_tab for ifeval without a download: prefetched copy first, trained fallback offline."""

from __future__ import annotations

import pytest

from ibnorm_llm.evaluation.harness import punkt
from ibnorm_llm.evaluation.harness.punkt import PUNKT_PATH, ensure_punkt_tab, train_punkt_tab

DOCS = [
    "The harness splits answers into sentences. Each sentence ends with a period! Does it work? It does.",
    "Dr. Smith read the report at noon. Then she wrote a short reply and sent it to the team.",
] * 20


@pytest.fixture(autouse=True)
def isolated_nltk_path(monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    monkeypatch.setenv("NLTK_DATA", "")


def test_trained_model_is_saved_in_the_punkt_tab_layout_and_splits_sentences(tmp_path):
    import nltk

    target = train_punkt_tab(tmp_path / "nltk", DOCS)
    assert target == tmp_path / "nltk" / PUNKT_PATH
    assert {p.name for p in target.iterdir()} >= {"collocations.tab", "sent_starters.txt", "abbrev_types.txt"}
    assert nltk.data.find(PUNKT_PATH + "/")
    assert nltk.sent_tokenize("It rained all day. We stayed inside! Did you?") == [
        "It rained all day.", "We stayed inside!", "Did you?"]


def test_prefetched_copy_wins_and_the_fallback_is_reported_as_trained(tmp_path, monkeypatch):
    offline = tmp_path / "offline"
    train_punkt_tab(offline / "nltk_data", DOCS)
    assert ensure_punkt_tab(offline, tmp_path / "fallback").kind == "prefetched"

    monkeypatch.setattr(punkt, "_installed", lambda: None)  # as on a machine without NLTK data
    monkeypatch.setattr("ibnorm_llm.data.builtin.builtin_corpus", lambda: DOCS)
    source = ensure_punkt_tab(tmp_path / "no_nltk_here", tmp_path / "fallback")
    assert source.kind == "trained" and (tmp_path / "fallback" / PUNKT_PATH).is_dir()
    assert ensure_punkt_tab(None, tmp_path / "other").kind == "download"  # online: lm-eval fetches the real one
