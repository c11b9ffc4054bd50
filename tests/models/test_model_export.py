"""`ibnorm-llm export`: baseline-norm checkpoints become stock transformers directories; others are refused."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPT2LMHeadModel, LlamaForCausalLM

from ibnorm_llm.cli import run_command
from ibnorm_llm.config import NormConfig, NormOverride


@pytest.fixture(scope="module")
def export_main():
    return lambda argv: run_command("export", argv)


@pytest.mark.parametrize(("family", "stock_class"), [("llama", LlamaForCausalLM), ("gpt2", GPT2LMHeadModel)])
def test_baseline_checkpoint_exports_to_stock_class_with_identical_logits(
    tmp_path, family, stock_class, export_main, make_tiny, perturb, tokens, capsys
):
    model = make_tiny(family)
    perturb(model)
    checkpoint, out = tmp_path / "ckpt", tmp_path / "stock"
    model.save_pretrained(checkpoint)
    (checkpoint / "tokenizer_config.json").write_text('{"tokenizer_class": "LlamaTokenizer"}')
    (checkpoint / "tokenizer.model").write_bytes(b"\x00sentencepiece stand-in")

    assert export_main(["--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    assert "tokenizer_config.json, tokenizer.model" in capsys.readouterr().out

    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [stock_class.__name__]
    assert "auto_map" not in config and not {"norm", "block_norms", "final_norm", "preset"} & config.keys()
    assert not list(out.glob("*.py"))
    assert (out / "tokenizer.model").read_bytes() == (checkpoint / "tokenizer.model").read_bytes()
    stock = stock_class.from_pretrained(out).eval()
    assert type(stock) is stock_class
    with torch.no_grad():
        torch.testing.assert_close(stock(tokens).logits, model(tokens).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("family", "fields", "reason"),
    [
        ("llama", dict(norm=NormConfig(kind="ibnorm")), "block 0 uses norm 'ibnorm', and the stock model only has 'rmsnorm'"),
        ("gpt2", dict(final_norm=NormConfig(kind="dyt")), "the final norm uses norm 'dyt'"),
        ("gpt2", dict(norm=NormConfig(kind="layernorm", bias=False)), "block 0 uses layernorm with bias=False"),
        ("llama", dict(norm=NormConfig(kind="rmsnorm", affine=False)), "block 0 uses rmsnorm with affine=False"),
        ("llama", dict(norm_overrides=(NormOverride(layers="1", norm=NormConfig(kind="rmsnorm", eps=1e-5)),)),
         "its norms share one eps, but this model's norms use [1e-06, 1e-05]"),
        ("llama", dict(norm_placement="peri"), "model.norm_placement='peri', but the stock model has norm_placement='pre'"),
        ("gpt2", dict(norm_placement="post"), "model.norm_placement='post'"),
        ("llama", dict(norm_scaling="lns"), "model.norm_scaling='lns', but the stock model has norm_scaling='none'"),
        ("gpt2", dict(qk_norm=NormConfig(kind="layernorm")), "model.qk_norm={kind: layernorm, ...}, but the stock model has qk_norm=None"),
    ],
)
def test_non_stock_norms_are_refused_with_the_reason(tmp_path, family, fields, reason, export_main, make_tiny, capsys):
    checkpoint, out = tmp_path / "ckpt", tmp_path / "stock"
    make_tiny(family, **fields).save_pretrained(checkpoint)
    assert export_main(["--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "export error: cannot export to a stock" in error and reason in error
    assert "trust_remote_code=True" in error
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_export_refuses_a_non_empty_out_and_a_missing_checkpoint(tmp_path, export_main, make_tiny, capsys):
    checkpoint, out = tmp_path / "ckpt", tmp_path / "stock"
    make_tiny("llama").save_pretrained(checkpoint)
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert export_main(["--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "exists and is not an empty directory" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "user data"
    assert export_main(["--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
    assert "no such directory" in capsys.readouterr().err
