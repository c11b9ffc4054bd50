import re

from ibnorm_llm.data import builtin as builtin_module
from ibnorm_llm.data import builtin_corpus, builtin_corpus_fingerprint


def test_builtin_corpus_is_over_a_megabyte_of_english_prose():
    docs = builtin_corpus()
    total = sum(len(d) for d in docs)
    assert total >= 1_000_000
    assert len(docs) >= 1000
    assert all(len(d.split()) >= builtin_module.MIN_WORDS for d in docs)
    # No doctest or indented code paragraph survives the filter.
    paragraphs = [p for d in docs for p in d.split("\n\n")]
    assert not any(p.startswith((">>>", " ", "\t")) for p in paragraphs)
    # Prose: the commonest English function words are everywhere.
    words = re.findall(r"[a-z]+", " ".join(docs).lower())
    share_the = words.count("the") / len(words)
    assert 0.02 < share_the < 0.15
    assert sum(w in {"the", "of", "is", "a", "to"} for w in words) / len(words) > 0.08


def test_builtin_corpus_is_deterministic():
    first, fingerprint = builtin_corpus(), builtin_corpus_fingerprint()
    builtin_module._cached_corpus.cache_clear()
    builtin_module.builtin_corpus_fingerprint.cache_clear()
    assert builtin_corpus() == first
    assert builtin_corpus_fingerprint() == fingerprint
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint)


def test_cached_builtin_shards_are_reused_without_parsing_the_stdlib(tokenizer, tmp_path):
    from ibnorm_llm.config import load_config
    from ibnorm_llm.data import build_train_loader

    cfg = load_config(None, ["data.source=builtin", f"data.cache_dir={tmp_path}", "data.seq_len=64",
                             f"tokenizer.name_or_path={tokenizer.name_or_path}", "tokenizer.vocab_size=512"])
    first = build_train_loader(cfg, tokenizer, rank=0, world_size=1)
    assert first.rows.shards.built and first.rows.shards.manifest["n_documents"] == len(builtin_corpus())
    builtin_module._cached_corpus.cache_clear()
    again = build_train_loader(cfg, tokenizer, rank=0, world_size=1)
    assert not again.rows.shards.built
    assert builtin_module._cached_corpus.cache_info().currsize == 0  # the corpus was never rebuilt
