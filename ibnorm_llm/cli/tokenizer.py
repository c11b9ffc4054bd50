"""Train a SentencePiece tokenizer on a config's corpus and save it as a Hugging Face tokenizer folder.

    ibnorm-llm tokenizer --config llama_tiny_rmsnorm.yaml [key=value ...] [--out DIR] [--force]

The corpus is the config's ``data.*`` (builtin, files or hf; held-out documents excluded), the
algorithm and size come from ``tokenizer.model_type`` and ``tokenizer.vocab_size``, and the
folder (default ``tokenizer.name_or_path``) loads with ``AutoTokenizer.from_pretrained``.
Training runs only if the folder does not hold a tokenizer yet, unless ``--force``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ibnorm_llm.cli.flags import add_config, add_out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config(parser)
    add_out(parser, "output folder", default="tokenizer.name_or_path of the config")
    parser.add_argument("--force", action="store_true", help="retrain even if the folder holds a tokenizer")


def run(args: argparse.Namespace) -> int:
    from ibnorm_llm.config import load_config
    from ibnorm_llm.data.tokenizer import load_tokenizer, train_tokenizer_dir

    overrides = list(args.overrides) + ([f"tokenizer.name_or_path={args.out}"] if args.out else [])
    cfg = load_config(args.config, overrides)
    out_dir = Path(cfg.tokenizer.name_or_path).expanduser()
    started = time.perf_counter()
    built = train_tokenizer_dir(cfg, out_dir, force=args.force)
    tokenizer = load_tokenizer(cfg)
    action = f"trained in {time.perf_counter() - started:.1f} s" if built else "already there (use --force to retrain)"
    sample = "The quick brown fox jumps over the lazy dog."
    ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
    print(f"{out_dir}: {type(tokenizer).__name__}, {len(tokenizer)} tokens, {action}")
    print(f"  bos={tokenizer.bos_token_id} eos={tokenizer.eos_token_id} pad={tokenizer.pad_token_id}")
    print(f"  {sample!r} -> {len(ids)} tokens")
    return 0
