"""Shared evaluation fixtures: a tiny checkpoint as the trainer writes it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from ibnorm_llm.config import load_config, save_config
from ibnorm_llm.data import builtin_corpus
from ibnorm_llm.data.tokenizer import ensure_special_tokens, train_sentencepiece
from ibnorm_llm.models import build_model
from ibnorm_llm.train.checkpoint import COMPLETE, STATE_DIR, TrainerState

VOCAB = 512


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """What the trainer writes: HF model dir + tokenizer + config.yaml + trainer_state (step 7)."""
    from transformers import AutoTokenizer

    tmp_path = tmp_path_factory.mktemp("tiny")
    docs = builtin_corpus()[:200]
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    tok_dir = tmp_path / "tok"
    train_sentencepiece(docs, tok_dir, vocab_size=VOCAB, model_type="bpe")
    cfg = load_config(None, [
        "run_name=tiny_ibnorm_l", "model.preset=llama-tiny", "model.n_layers=2",
        "model.norm.kind=ibnorm", "model.norm.variant=L", "model.norm.lam=4.0", "train.seed=3",
        "data.source=files", f"data.files=[{corpus}]", f"data.cache_dir={tmp_path / 'cache'}",
        "data.seq_len=64", "data.val_tokens=512", "data.val_fraction=0.1", "train.micro_batch_size=4",
        f"tokenizer.name_or_path={tok_dir}", f"tokenizer.vocab_size={VOCAB}",
    ])
    tokenizer = ensure_special_tokens(AutoTokenizer.from_pretrained(str(tok_dir)))
    torch.manual_seed(0)
    model = build_model(cfg.model, vocab_size=len(tokenizer))
    ckpt = tmp_path / "checkpoints" / "final"
    model.save_pretrained(ckpt)
    tokenizer.save_pretrained(ckpt)
    save_config(cfg, ckpt / "config.yaml")
    (ckpt / STATE_DIR).mkdir()
    state = TrainerState(step=7, tokens=7 * 256, skipped_steps=0, world_size=1, grad_accum=1, micro_batch_size=4)
    (ckpt / STATE_DIR / "trainer.json").write_text(json.dumps(asdict(state)))
    (ckpt / STATE_DIR / COMPLETE).write_text("step 7\n")
    return ckpt
