"""The hub-streaming path, run against a local dataset folder through the same load_dataset(streaming=True) call."""

import json

import pytest
import torch

from ibnorm_llm.data import DataError, build_train_loader, build_val_batches, check_data_config
from ibnorm_llm.data.streaming import StreamTrainLoader

N_TRAIN, N_VAL = 32, 12


@pytest.fixture(scope="module")
def hub_like_dir(tmp_path_factory, docs):
    """A folder laid out like a hub dataset: data/<split>-<shard>-of-<n>.jsonl, two train shards."""
    root = tmp_path_factory.mktemp("c4_standin")
    (root / "data").mkdir()
    short_docs = docs[-(N_TRAIN + N_VAL) :]  # docstrings: a rank's epoch is a few dozen batches
    train, val = short_docs[:N_TRAIN], short_docs[N_TRAIN:]
    for shard in range(2):
        rows = train[shard::2]
        path = root / "data" / f"train-0000{shard}-of-00002.jsonl"
        path.write_text("".join(json.dumps({"text": t, "url": "u"}) + "\n" for t in rows))
    (root / "data" / "validation-00000-of-00001.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in val)
    )
    return root


@pytest.fixture
def hf_cfg(make_cfg, hub_like_dir):
    def make(*overrides):
        return make_cfg("data.source=hf", "data.files=[]", f"data.hf_name={hub_like_dir}", "data.hf_config=null",
                        "data.shuffle_buffer=10", "data.num_workers=2", *overrides)

    return make


def rows_of(batches):
    return [tuple(r.tolist()) for b in batches for r in b["input_ids"]]


def test_stream_batches_resume_exactly_on_two_ranks(hf_cfg, tokenizer):
    cfg = hf_cfg()
    for rank in (0, 1):
        reference = build_train_loader(cfg, tokenizer, rank=rank, world_size=2)
        assert isinstance(reference, StreamTrainLoader)
        expected = [next(reference) for _ in range(40)]
        assert reference.state_dict()["epoch"] >= 1  # the stream wrapped around within these batches
        reference.close()
        assert expected[0]["input_ids"].shape == (4, 32)
        assert torch.equal(expected[0]["input_ids"], expected[0]["labels"])

        interrupted = build_train_loader(cfg, tokenizer, rank=rank, world_size=2)
        for _ in range(17):
            next(interrupted)
        state = json.loads(json.dumps(interrupted.state_dict()))
        interrupted.close()
        resumed = build_train_loader(cfg, tokenizer, rank=rank, world_size=2)
        resumed.load_state_dict(state)
        again = [next(resumed) for _ in range(23)]
        resumed.close()
        assert rows_of(again) == rows_of(expected[17:])


def test_ranks_see_disjoint_documents_and_validation_is_separate(hf_cfg, tokenizer):
    cfg = hf_cfg("data.packing=pad", "data.seq_len=512", "train.micro_batch_size=2")
    seen = []
    for rank in (0, 1):
        loader = build_train_loader(cfg, tokenizer, rank=rank, world_size=2)
        seen.append(set(rows_of([next(loader) for _ in range(N_TRAIN // 4)])))  # one epoch: N_TRAIN // 2 docs per rank
        loader.close()
    assert len(seen[0]) == len(seen[1]) == N_TRAIN // 2
    assert not seen[0] & seen[1]
    val = set(rows_of(build_val_batches(hf_cfg("data.packing=pad", "data.seq_len=512", "data.val_tokens=4096"),
                                        tokenizer, rank=0, world_size=1)))
    assert len(val) == 8 and not val & (seen[0] | seen[1])


def test_validation_carved_from_train_by_hash_when_no_val_split(hf_cfg, tokenizer):
    cfg = hf_cfg("data.val_split=null", "data.val_fraction=0.25", "data.packing=pad", "data.seq_len=512",
                 "data.val_tokens=1024", "train.micro_batch_size=1")
    val = set(rows_of(build_val_batches(cfg, tokenizer, rank=0, world_size=1)))
    loader = build_train_loader(cfg, tokenizer, rank=0, world_size=1)
    train = set(rows_of([next(loader) for _ in range(N_TRAIN)]))  # every train doc, with repeats
    loader.close()
    assert len(val) == 2 and N_TRAIN // 2 < len(train) < N_TRAIN and not val & train


def test_stream_errors_are_clear(hf_cfg, tokenizer, tmp_path):
    cfg = hf_cfg("data.text_field=body")
    loader = build_train_loader(cfg, tokenizer, rank=0, world_size=1)
    with pytest.raises(DataError, match=r"no field 'body' \(data.text_field\); fields present: text, url"):
        next(loader)
    with pytest.raises(DataError, match="no field 'body'"):
        check_data_config(cfg, tokenizer, max_positions=512)
    with pytest.raises(DataError, match=r"data.hf_name=.*nothing-here"):
        build_train_loader(hf_cfg(f"data.hf_name={tmp_path / 'nothing-here'}"), tokenizer, rank=0, world_size=1)
    check_data_config(hf_cfg(), tokenizer, max_positions=512)
