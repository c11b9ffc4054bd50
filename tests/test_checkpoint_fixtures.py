"""Checkpoints written before issue 13 (tests/fixtures/checkpoints, see its README) still load and
compute what they computed when they were saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from ibnorm_llm.config import load_config
from ibnorm_llm.models import load_model

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
NAMES = ("llama_ibnorm_l", "gpt2_layernorm")


@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_loads_and_computes_the_same(name):
    path = FIXTURES / name
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = load_model(path).eval()
    cfg = load_config(path / "config.yaml")

    ids = tokenizer(expected["text"], return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == expected["input_ids"]
    assert sum(p.numel() for p in model.parameters()) == expected["num_parameters"]
    assert cfg.model.d_model == model.config.hidden_size == 8
    ids = ids[:, : expected["forward_on_first"]]
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    assert float(out.loss) == pytest.approx(expected["loss"], abs=1e-5)
    torch.testing.assert_close(out.logits[0, -1, :16], torch.tensor(expected["last_logits_first16"]), atol=1e-5, rtol=0)
