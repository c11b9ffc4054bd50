"""Export a baseline-norm checkpoint as a stock transformers model directory (no remote code).

    ibnorm-llm export --checkpoint runs/<run>/checkpoints/final --out exported/<run>

A layernorm GPT-2 or rmsnorm LLaMA checkpoint in the Pre-LN placement (no LayerNorm Scaling, no
query/key norm) becomes a GPT2LMHeadModel / LlamaForCausalLM directory with identical logits
(tokenizer files copied along); any other norm or layout is refused, naming the setting. The logic
lives in ibnorm_llm/models/export.py.
"""

from __future__ import annotations

import argparse

from ibnorm_llm.cli.flags import add_out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory written by save_pretrained")
    add_out(parser, "new (or empty) directory for the stock model", required=True)


def run(args: argparse.Namespace) -> int:
    from ibnorm_llm.checkpoint import load_checkpoint
    from ibnorm_llm.models.export import export_model

    checkpoint = load_checkpoint(args.checkpoint, tokenizer=False)  # tokenizer files are copied as they are
    copied = export_model(checkpoint.model, checkpoint.path, args.out)
    tokenizer_note = ", ".join(copied) if copied else "none found in the checkpoint: add a tokenizer before use"
    print(f"export: wrote {args.out} (tokenizer files: {tokenizer_note})")
    return 0
