import json

import numpy as np
import pytest
import torch

from ibnorm_llm.data import IGNORE_INDEX, DataError, build_train_loader, build_val_batches
from ibnorm_llm.data.corpus import local_corpus
from ibnorm_llm.data.loader import ShardTrainLoader
from ibnorm_llm.data.shards import load_token_shards


def take(loader, n):
    return [next(loader) for _ in range(n)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["labels"], y["labels"])


def test_concat_rows_are_the_eos_joined_stream_and_labels_equal_inputs(make_cfg, tokenizer, docs):
    cfg = make_cfg()
    loader = build_train_loader(cfg, tokenizer, rank=0, world_size=1)
    batch = next(loader)
    assert batch["input_ids"].shape == (4, 32) and batch["input_ids"].dtype == torch.long
    assert torch.equal(batch["input_ids"], batch["labels"])
    assert loader.tokens_per_batch == 4 * 32
    # Rows in stream order reproduce the training documents joined by EOS.
    rows = loader.rows
    stream = np.concatenate([rows.row(i)[0] for i in range(rows.n_rows)])
    train_docs = [tokenizer(docs[i], add_special_tokens=False)["input_ids"] for i in rows.doc_ids]
    expected = np.asarray([t for ids in train_docs for t in [*ids, tokenizer.eos_token_id]])
    assert rows.n_rows == len(expected) // 32
    assert np.array_equal(stream, expected[: len(stream)])


def test_pad_rows_hold_one_document_with_padding_masked(make_cfg, tokenizer):
    cfg = make_cfg("data.packing=pad", "data.seq_len=128")
    loader = build_train_loader(cfg, tokenizer, rank=0, world_size=1)
    rows = loader.rows
    lengths = rows.shards.lengths[rows.doc_ids]
    short, long = int(np.argmin(lengths)), int(np.argmax(lengths))
    assert lengths[short] < 127 and lengths[long] > 128
    row, n = rows.row(short)
    doc = rows.shards.document(int(rows.doc_ids[short]))
    assert n == len(doc) + 1
    assert np.array_equal(row[: len(doc)], doc) and row[len(doc)] == tokenizer.eos_token_id
    assert (row[n:] == tokenizer.pad_token_id).all()
    row, n = rows.row(long)
    assert n == 128 and np.array_equal(row, rows.shards.document(int(rows.doc_ids[long]))[:128])  # truncated
    batches = take(loader, 20)
    for batch in batches:
        padding = batch["labels"] == IGNORE_INDEX
        assert torch.equal(batch["labels"][~padding], batch["input_ids"][~padding])
        assert (batch["input_ids"][padding] == tokenizer.pad_token_id).all()
    assert any(b["labels"].eq(IGNORE_INDEX).any() for b in batches)
    assert loader.tokens_per_batch == int((batches[-1]["labels"] != IGNORE_INDEX).sum())


def test_padding_is_masked_by_position_when_pad_equals_eos(make_cfg, tokenizer):
    from ibnorm_llm.data.loader import make_batch
    from ibnorm_llm.data.packing import pad_row

    eos = tokenizer.eos_token_id
    row, n = pad_row([5, 6, 7], 8, eos_id=eos, pad_id=eos)  # gpt2 style: pad == EOS
    batch = make_batch(row[None, :], np.asarray([n]))
    assert batch["labels"][0].tolist() == [5, 6, 7, eos, -100, -100, -100, -100]


def test_exact_resume_single_process_across_epochs(make_cfg, tokenizer):
    cfg = make_cfg()
    reference = build_train_loader(cfg, tokenizer, rank=0, world_size=1)
    epoch_batches = reference.rows.n_rows // 4
    total = epoch_batches + 10  # crosses an epoch boundary
    expected = take(reference, total)

    first = build_train_loader(cfg, tokenizer, rank=0, world_size=1)
    take(first, epoch_batches - 3)
    state = json.loads(json.dumps(first.state_dict()))  # JSON-safe and small
    assert len(json.dumps(state)) < 500
    resumed = build_train_loader(cfg, tokenizer, rank=0, world_size=1)
    resumed.load_state_dict(state)
    assert_same_batches(take(resumed, 13), expected[epoch_batches - 3 :])
    # A new epoch is a new order, not a repeat of the last one.
    assert not torch.equal(expected[0]["input_ids"], expected[epoch_batches]["input_ids"])


def test_two_ranks_are_disjoint_and_resume_exactly(make_cfg, tokenizer):
    cfg = make_cfg()
    loaders = [build_train_loader(cfg, tokenizer, rank=r, world_size=2) for r in (0, 1)]
    n_rows = loaders[0].rows.n_rows
    steps = n_rows // (4 * 2)
    seen = [[i for k in range(steps) for i in loader.row_indices(k * 8)] for loader in loaders]
    assert not set(seen[0]) & set(seen[1])
    assert len(set(seen[0]) | set(seen[1])) == steps * 8  # no repeat within the epoch

    expected = [take(loader, 6) for loader in loaders]
    again = [build_train_loader(cfg, tokenizer, rank=r, world_size=2) for r in (0, 1)]
    for loader in again:
        take(loader, 2)
    states = [loader.state_dict() for loader in again]
    assert states[0] == states[1]  # the position is global: one state fits every rank
    for r in (0, 1):
        resumed = build_train_loader(cfg, tokenizer, rank=r, world_size=2)
        resumed.load_state_dict(states[r])
        assert_same_batches(take(resumed, 4), expected[r][2:])


def test_loader_state_from_other_data_is_rejected(make_cfg, tokenizer):
    state = build_train_loader(make_cfg(), tokenizer, rank=0, world_size=1).state_dict()
    other = build_train_loader(make_cfg("data.seq_len=16"), tokenizer, rank=0, world_size=1)
    with pytest.raises(DataError, match="seq_len: saved 32, now 16"):
        other.load_state_dict(state)
    with pytest.raises(DataError, match="'stream' loader"):
        other.load_state_dict({"format": 1, "kind": "stream"})


def test_shards_are_reused_and_rebuilt_when_corpus_or_tokenizer_change(make_cfg, tokenizer, tmp_path, docs):
    cfg = make_cfg()
    first = load_token_shards(local_corpus(cfg.data), tokenizer, cfg.data.cache_dir)
    assert first.built and first.manifest["n_documents"] == len(docs)
    assert first.tokens.dtype == np.uint16
    assert np.array_equal(first.document(3), tokenizer(docs[3], add_special_tokens=False)["input_ids"])
    reused = load_token_shards(local_corpus(cfg.data), tokenizer, cfg.data.cache_dir)
    assert not reused.built and reused.directory == first.directory

    # Another tokenizer (same vocabulary, other special tokens) gets its own shards.
    from transformers import AutoTokenizer

    other_tok = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    other_tok.pad_token = other_tok.eos_token
    rebuilt = load_token_shards(local_corpus(cfg.data), other_tok, cfg.data.cache_dir)
    assert rebuilt.built and rebuilt.directory != first.directory

    # An edited corpus file is re-tokenized.
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[:50]))
    cfg_edit = make_cfg(f"data.files=[{edited}]")
    a = load_token_shards(local_corpus(cfg_edit.data), tokenizer, cfg_edit.data.cache_dir)
    edited.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[:60]))
    b = load_token_shards(local_corpus(cfg_edit.data), tokenizer, cfg_edit.data.cache_dir)
    assert a.built and b.built and b.manifest["n_documents"] == 60


def test_validation_is_held_out_deterministic_and_split_across_ranks(make_cfg, tokenizer):
    cfg = make_cfg()
    single = build_val_batches(cfg, tokenizer, rank=0, world_size=1)
    rows = torch.cat([b["input_ids"] for b in single])
    assert rows.shape == (256 // 32, 32)
    assert_same_batches(single, build_val_batches(cfg, tokenizer, rank=0, world_size=1))
    halves = [torch.cat([b["input_ids"] for b in build_val_batches(cfg, tokenizer, rank=r, world_size=2)])
              for r in (0, 1)]
    assert torch.equal(halves[0], rows[0::2]) and torch.equal(halves[1], rows[1::2])
    # Held-out documents never appear in training.
    train = build_train_loader(cfg, tokenizer, rank=0, world_size=1).rows
    val_docs = set(range(train.shards.n_documents)) - set(train.doc_ids.tolist())
    assert val_docs and not val_docs & set(train.doc_ids.tolist())


def test_too_little_data_is_a_clear_error(make_cfg, tokenizer):
    with pytest.raises(DataError, match="data.val_tokens=100000"):
        build_val_batches(make_cfg("data.val_tokens=100000"), tokenizer, rank=0, world_size=1)
    with pytest.raises(DataError, match="train.micro_batch_size"):
        build_train_loader(make_cfg("train.micro_batch_size=100000"), tokenizer, rank=0, world_size=1)


def test_loader_is_infinite_and_identical_on_rebuild(make_cfg, tokenizer):
    cfg = make_cfg("data.packing=pad")
    a = build_train_loader(cfg, tokenizer, rank=0, world_size=1)
    assert isinstance(a, ShardTrainLoader)
    n = a.rows.n_rows // 4 * 3 + 1  # three epochs and then some
    assert_same_batches(take(a, n)[-5:], take(build_train_loader(cfg, tokenizer, rank=0, world_size=1), n)[-5:])
