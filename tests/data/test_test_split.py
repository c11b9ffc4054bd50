"""The test split: held out by text hash next to validation, disjoint from both other splits, for
local corpora and streamed (hub-layout) datasets, and never trained on."""

import json

import numpy as np
import pytest

from ibnorm_llm.config import ConfigError
from ibnorm_llm.data import DataError, build_train_loader, build_val_batches
from ibnorm_llm.data.corpus import document_hash, local_corpus, split_of
from ibnorm_llm.data.shards import load_token_shards
from ibnorm_llm.data.streaming import _keep_for
from ibnorm_llm.data.tokenizer import training_documents


def test_split_of_bands_validation_then_test_and_keeps_validation_fixed():
    top = 2**64
    assert split_of(0, 0.1, 0.2) == "validation"
    assert split_of(int(0.15 * top), 0.1, 0.2) == "test"
    assert split_of(int(0.35 * top), 0.1, 0.2) == "train"
    # Adding a test split never moves a validation document.
    hashes = [document_hash(f"document {i}") for i in range(2000)]
    with_test = [split_of(h, 0.1, 0.2) for h in hashes]
    without = [split_of(h, 0.1, 0.0) for h in hashes]
    assert [s == "validation" for s in with_test] == [s == "validation" for s in without]
    assert "test" not in without
    assert 0.15 < with_test.count("test") / len(hashes) < 0.25


def test_local_splits_partition_the_corpus(make_cfg, tokenizer, docs):
    cfg = make_cfg("data.test_fraction=0.2")
    shards = load_token_shards(local_corpus(cfg.data), tokenizer, cfg.data.cache_dir)
    ids = {name: set(shards.split_ids(name, 0.1, 0.2).tolist()) for name in ("train", "validation", "test")}
    assert all(ids.values())
    assert not (ids["train"] & ids["test"]) and not (ids["validation"] & ids["test"])
    assert not (ids["train"] & ids["validation"])
    assert set().union(*ids.values()) == set(range(len(docs)))
    for i in ids["test"]:
        assert split_of(document_hash(docs[i]), 0.1, 0.2) == "test"
    # The training loader's rows and the tokenizer's documents come from the train split only.
    loader = build_train_loader(cfg, tokenizer, rank=0, world_size=1)
    assert set(loader.rows.doc_ids.tolist()) == ids["train"]
    assert "test_fraction" in loader.state_dict()
    tokenizer_docs = set(training_documents(cfg))
    assert tokenizer_docs == {docs[i] for i in ids["train"]}


def test_test_batches_hold_test_documents_and_differ_from_validation(make_cfg, tokenizer, docs):
    cfg = make_cfg("data.test_fraction=0.2", "data.packing=pad", "data.seq_len=512", "data.val_tokens=2048")
    test = build_val_batches(cfg, tokenizer, rank=0, world_size=1, split="test")
    val = build_val_batches(cfg, tokenizer, rank=0, world_size=1)
    test_docs = [d for d in docs if split_of(document_hash(d), 0.1, 0.2) == "test"]
    first_ids = tokenizer(test_docs[0], add_special_tokens=False)["input_ids"][:100]
    assert test[0]["input_ids"][0, :100].tolist() == first_ids
    assert not any(np.array_equal(a, b) for a in test[0]["input_ids"].numpy() for b in val[0]["input_ids"].numpy())
    # Validation rows are the same with and without a test split.
    plain = build_val_batches(make_cfg("data.packing=pad", "data.seq_len=512", "data.val_tokens=2048"), tokenizer,
                              rank=0, world_size=1)
    assert all(np.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(val, plain, strict=True))


def test_test_split_errors_name_the_key(make_cfg, tokenizer):
    with pytest.raises(DataError, match="data.test_fraction"):
        build_val_batches(make_cfg(), tokenizer, rank=0, world_size=1, split="test")
    with pytest.raises(DataError, match="raise data.test_fraction"):
        build_val_batches(make_cfg("data.test_fraction=0.01", "data.val_tokens=8192"), tokenizer, rank=0,
                          world_size=1, split="test")
    with pytest.raises(ConfigError, match="eval.test=true but the data has no test split"):
        make_cfg("eval.test=true")
    with pytest.raises(ConfigError, match="data.test_fraction=0.95"):
        make_cfg("data.test_fraction=0.95")


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory, docs):
    root = tmp_path_factory.mktemp("hub_standin")
    (root / "data").mkdir()
    (root / "data" / "train-00000-of-00001.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    (root / "data" / "test-00000-of-00001.jsonl").write_text(
        "".join(json.dumps({"text": f"Test document number {i}. " * 20}) + "\n" for i in range(40))
    )
    return root


def test_streamed_test_split_carved_by_hash_or_read_from_its_own_split(make_cfg, tokenizer, hub_dir, docs):
    base = ["data.source=hf", "data.files=[]", f"data.hf_name={hub_dir}", "data.hf_config=null", "data.val_split=null"]
    cfg = make_cfg(*base, "data.test_fraction=0.2")
    keep = {name: _keep_for(name, cfg.data) for name in ("train", "validation", "test")}
    for doc in docs:
        assert sum(keep[name](doc) for name in keep) == 1  # every document in exactly one split
    rows = build_val_batches(cfg, tokenizer, rank=0, world_size=1, split="test")[0]["input_ids"]
    first_test = next(d for d in docs if keep["test"](d))
    assert rows[0, :20].tolist() == tokenizer(first_test, add_special_tokens=False)["input_ids"][:20]

    own = make_cfg(*base, "data.test_split=test")
    rows = build_val_batches(own, tokenizer, rank=0, world_size=1, split="test")[0]["input_ids"]
    expected = tokenizer("Test document number 0. " * 20, add_special_tokens=False)["input_ids"][:20]
    assert rows[0, :20].tolist() == expected
    assert all(_keep_for("train", own.data)(d) == _keep_for("train", make_cfg(*base).data)(d) for d in docs[:50])
    with pytest.raises(ConfigError, match="both set"):
        make_cfg(*base, "data.test_split=test", "data.test_fraction=0.1")
