"""Is data loading a bottleneck? The training loader's tokens/s beside the tiny model's training tokens/s.

    python scripts/bench_data.py                       # llama-tiny, built-in corpus, seq 256, micro batch 8
    python scripts/bench_data.py --quick               # fewer batches and steps: a smoke run
    python scripts/bench_data.py --config llama_tiny_rmsnorm.yaml data.packing=pad

Training is a plain fp32 forward + backward + AdamW step of the config's model (by default
llama-tiny: d_model 128, 4 layers, 4 heads, 4096-token vocabulary) on batches drawn beforehand, so
the two numbers do not include each other. The loader is timed from its first batch after the
token shards exist (building them is a one-off, reported separately). Target: loader >= 20x training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from ibnorm_llm.config import ConfigError, load_config
from ibnorm_llm.data import DataError, build_train_loader, load_tokenizer

TARGET_RATIO = 20.0
BENCH_DEFAULTS = ["data.seq_len=256", "train.micro_batch_size=8"]


def loader_tokens_per_s(loader, n_batches: int) -> tuple[float, float]:
    """(real tokens/s, padded tokens/s) over ``n_batches`` batches."""
    real = padded = 0
    started = time.perf_counter()
    for _ in range(n_batches):
        batch = next(loader)
        real += loader.tokens_per_batch
        padded += batch["input_ids"].numel()
    elapsed = time.perf_counter() - started
    return real / elapsed, padded / elapsed


def training_tokens_per_s(cfg, vocab_size: int, batches: list[dict], warmup: int) -> float:
    from ibnorm_llm.models import build_model

    torch.manual_seed(0)
    model = build_model(cfg.model, vocab_size)  # pads the embedding to a multiple of 64 itself
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(batch):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:warmup]:
        step(batch)
    timed = batches[warmup:]
    started = time.perf_counter()
    for batch in timed:
        step(batch)
    elapsed = time.perf_counter() - started
    return sum(b["input_ids"].numel() for b in timed) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="llama_tiny_rmsnorm.yaml", help="config name in configs/ or a YAML path")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides (after the bench defaults)")
    parser.add_argument("--quick", action="store_true", help="few batches and steps (smoke run)")
    parser.add_argument("--loader-batches", type=int, default=None, help="batches to time the loader on")
    parser.add_argument("--train-steps", type=int, default=None, help="training steps to time")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    loader_batches = args.loader_batches or (50 if args.quick else 1000)
    train_steps = args.train_steps or (3 if args.quick else 20)
    warmup = 1 if args.quick else 3
    try:
        cfg = load_config(args.config, BENCH_DEFAULTS + list(args.overrides))
        tokenizer = load_tokenizer(cfg)
        started = time.perf_counter()
        loader = build_train_loader(cfg, tokenizer, rank=0, world_size=1)
        first = next(loader)  # includes building (or opening) the token shards
        setup_s = time.perf_counter() - started
        real_tps, padded_tps = loader_tokens_per_s(loader, loader_batches)
        batches = [first] + [next(loader) for _ in range(warmup + train_steps - 1)]
        loader.close()
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    train_tps = training_tokens_per_s(cfg, len(tokenizer), batches, warmup)
    ratio = padded_tps / train_tps
    result = {
        "model": cfg.model.preset, "source": cfg.data.source, "packing": cfg.data.packing,
        "seq_len": cfg.data.seq_len, "micro_batch_size": cfg.train.micro_batch_size,
        "vocab_size": len(tokenizer), "threads": torch.get_num_threads(),
        "loader_setup_s": round(setup_s, 3), "loader_tokens_per_s": round(padded_tps),
        "loader_real_tokens_per_s": round(real_tps), "train_tokens_per_s": round(train_tps, 1),
        "ratio": round(ratio, 1), "target_ratio": TARGET_RATIO, "quick": args.quick,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{cfg.model.preset}, {cfg.data.source} corpus, packing={cfg.data.packing}, "
              f"{cfg.train.micro_batch_size}x{cfg.data.seq_len} tokens, vocab {len(tokenizer)}, "
              f"{torch.get_num_threads()} threads{' (quick)' if args.quick else ''}")
        print(f"  loader setup (tokenizer loaded; shards built or opened, first batch): {setup_s:8.2f} s")
        print(f"  loader:   {padded_tps:14,.0f} tokens/s  ({real_tps:,.0f} non-pad)")
        print(f"  training: {train_tps:14,.1f} tokens/s  (fwd+bwd+AdamW, fp32)")
        verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
        print(f"  ratio:    {ratio:14,.1f}x  ({verdict} the {TARGET_RATIO:.0f}x target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
