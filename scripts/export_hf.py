"""Export a baseline-norm checkpoint as a stock transformers model directory (no remote code).

    python scripts/export_hf.py --checkpoint runs/<run>/checkpoints/final --out exported/<run>

A layernorm GPT-2 or rmsnorm LLaMA checkpoint becomes a GPT2LMHeadModel / LlamaForCausalLM
directory with identical logits (tokenizer files copied along); any other norm is refused
with the reason. The logic lives in ibnorm_llm/models/export.py.
"""

from __future__ import annotations

import argparse
import sys

from ibnorm_llm.checkpoint import CheckpointError, load_checkpoint
from ibnorm_llm.models.export import ExportError, export_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory written by save_pretrained")
    parser.add_argument("--out", required=True, help="new (or empty) directory for the stock model")
    args = parser.parse_args(argv)
    try:
        checkpoint = load_checkpoint(args.checkpoint, tokenizer=False)  # tokenizer files are copied as they are
        copied = export_model(checkpoint.model, checkpoint.path, args.out)
    except (ExportError, CheckpointError) as err:
        print(f"export_hf: error: {err}", file=sys.stderr)
        return 2
    tokenizer_note = ", ".join(copied) if copied else "none found in the checkpoint: add a tokenizer before use"
    print(f"export_hf: wrote {args.out} (tokenizer files: {tokenizer_note})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
