"""Checkpoints written before issue 13 (tests/fixtures/checkpoints, see its README) still load and
compute what they computed when they were saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ibnorm_llm.checkpoint import CheckpointError, load_checkpoint
from ibnorm_llm.cli import run_command

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"
NAMES = ("llama_ibnorm_l", "gpt2_layernorm")
# The model classes were renamed after these checkpoints were written (their config.json still
# says model_type ibnorm_llama / ibnorm_gpt2); they must load as today's classes.
RENAMED = {"IBNormLlamaForCausalLM": "NormLlamaForCausalLM", "IBNormGPT2LMHeadModel": "NormGPT2LMHeadModel"}


@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_loads_and_computes_the_same(name):
    path = FIXTURES / name
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    ckpt = load_checkpoint(path)
    model, tokenizer, cfg = ckpt.model, ckpt.tokenizer, ckpt.config
    assert ckpt.step == 4 and ckpt.info.tokens == 256
    assert type(model).__name__ == RENAMED[expected["model_class"]]

    ids = tokenizer(expected["text"], return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == expected["input_ids"]
    assert sum(p.numel() for p in model.parameters()) == expected["num_parameters"]
    assert cfg.model.d_model == model.config.hidden_size == 8
    ids = ids[:, : expected["forward_on_first"]]
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    assert float(out.loss) == pytest.approx(expected["loss"], abs=1e-5)
    torch.testing.assert_close(out.logits[0, -1, :16], torch.tensor(expected["last_logits_first16"]), atol=1e-5, rtol=0)


def test_an_interrupted_checkpoint_is_refused_by_name(tmp_path):
    import shutil

    path = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "llama_ibnorm_l", path)
    (path / "trainer_state" / "COMPLETE").unlink()
    with pytest.raises(CheckpointError, match=r"--checkpoint .*trainer_state/ is incomplete"):
        load_checkpoint(path)


def test_an_old_baseline_checkpoint_exports_to_the_stock_class(tmp_path):
    from transformers import GPT2LMHeadModel

    assert run_command("export", ["--checkpoint", str(FIXTURES / "gpt2_layernorm"), "--out", str(tmp_path / "stock")]) == 0

    expected = json.loads((FIXTURES / "gpt2_layernorm.expected.json").read_text())
    stock = GPT2LMHeadModel.from_pretrained(tmp_path / "stock").eval()
    ids = torch.tensor([expected["input_ids"][: expected["forward_on_first"]]])
    with torch.no_grad():
        logits = stock(input_ids=ids).logits
    torch.testing.assert_close(logits[0, -1, :16], torch.tensor(expected["last_logits_first16"]), atol=1e-5, rtol=0)
