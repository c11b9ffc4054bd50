"""Bits per byte: loss * tokens / (ln 2 * bytes), with the bytes of the text the target tokens spell."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ibnorm_llm.config import load_config
from ibnorm_llm.data import builtin_corpus
from ibnorm_llm.data.loader import make_batch
from ibnorm_llm.data.token_bytes import token_bytes
from ibnorm_llm.data.tokenizer import ensure_special_tokens, train_sentencepiece
from ibnorm_llm.models import build_model
from ibnorm_llm.train.metrics import bits_per_byte, held_out_metrics, held_out_totals

DOCS = [
    "Hello wörld, naïve façade 😀: tabs\tand  two spaces.\nA second line.",
    "The quick brown fox jumps over the lazy dog; it is 42 °C in the shade.",
]


@pytest.fixture(scope="module")
def sp_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tok") / "sp"
    train_sentencepiece(builtin_corpus()[:150], out, vocab_size=400, model_type="bpe")
    return ensure_special_tokens(AutoTokenizer.from_pretrained(str(out)))


@pytest.fixture(scope="module")
def byte_level_tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    raw = ByteLevelBPETokenizer()
    raw.train_from_iterator(builtin_corpus()[:150], vocab_size=400, special_tokens=["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=raw._tokenizer, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")


def packed_row(tokenizer) -> torch.Tensor:
    """EOS doc0 EOS doc1: every document token and the EOS between them is a target."""
    ids = [tokenizer.eos_token_id]
    for doc in DOCS:
        ids += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return torch.tensor([ids])


@pytest.mark.parametrize("which", ["sp_tokenizer", "byte_level_tokenizer"])
def test_target_bytes_are_the_texts_utf8_bytes(which, request):
    tokenizer = request.getfixturevalue(which)
    row = packed_row(tokenizer)
    table = token_bytes(tokenizer)
    assert int(table.count(row, row.clone())) == sum(len(d.encode("utf-8")) for d in DOCS)


def test_bits_per_byte_is_loss_times_tokens_over_ln2_bytes(sp_tokenizer):
    cfg = load_config(None, ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_ff=64"])
    torch.manual_seed(0)
    model = build_model(cfg.model, vocab_size=len(sp_tokenizer))
    row = packed_row(sp_tokenizer)
    batch = make_batch(row.numpy(), [row.shape[1]])
    totals = held_out_totals(model, [batch], "cpu", token_bytes(sp_tokenizer)).tolist()
    loss_sum, tokens, n_bytes = totals
    with torch.no_grad():
        logits = model(input_ids=row).logits[0, :-1]
    expected_loss = F.cross_entropy(logits, row[0, 1:]).item()
    text_bytes = sum(len(d.encode("utf-8")) for d in DOCS)
    assert tokens == row.shape[1] - 1 and n_bytes == text_bytes
    metrics = held_out_metrics(totals, "test")
    assert metrics["test_loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert metrics["test_bpb"] == pytest.approx(expected_loss * tokens / (math.log(2) * text_bytes), rel=1e-6)
    assert bits_per_byte(1.0, 10, 0) is None
    # Two totals without the byte table keep their old form.
    assert held_out_totals(model, [batch], "cpu").shape == (2,)
