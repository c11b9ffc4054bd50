"""Training throughput: our trainer against a plain PyTorch loop over the stock transformers model.

    python scripts/bench_train.py                                  # llama_tiny, rmsnorm vs stock
    python scripts/bench_train.py --norms rmsnorm ibnorm_l         # + IBNorm-L step-time ratio
    python scripts/bench_train.py --quick                          # seconds, for smoke tests
    python scripts/bench_train.py --monitor-every 100              # + the cost of monitor.every=100 and =1

Both contenders run in this one process on the same machine, with the same model size,
initial weights, micro batch, accumulation, optimizer settings, device and precision
(train.precision: bf16 autocast or a bf16 model, as the trainer does) and the same data
tensors (the same training loader, read in the same order). The plain loop is the textbook one:
forward, backward, clip, AdamW step, zero_grad; it trains transformers' own
LlamaForCausalLM / GPT2LMHeadModel built from our baseline model's weights. The first
``--warmup`` steps of every run are not timed; each contender's best of ``--rounds`` runs
is reported, because other processes on a shared machine only ever make a run slower.

With more than the baseline norm, a second table times the norms' models stepping in turn on
the same batches (no trainer, no drift between separate runs): what each norm costs in a step.

``--monitor-every N`` adds the telemetry's cost (monitor.every, docs/monitoring.md): one trainer
session runs plain steps and monitor steps in turn, and the ratio of their medians r gives the
step-time overhead at every N steps, (r - 1) / N, and at every step, r - 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from accelerate.utils import set_seed

from ibnorm_llm.config import ConfigError, load_config
from ibnorm_llm.data import DataError, build_train_loader, load_tokenizer
from ibnorm_llm.models import FAMILY_BASELINE_NORM, PRESETS, build_model
from ibnorm_llm.models.export import to_stock_model
from ibnorm_llm.train.batching import plan_batches
from ibnorm_llm.train.cpu_memory import reuse_freed_memory
from ibnorm_llm.train.distributed import apply_compute_options, check_precision
from ibnorm_llm.train.metrics import read_metrics
from ibnorm_llm.train.optim import lr_at, set_lr
from ibnorm_llm.train.trainer import Progress, setup, train, train_step

QUICK = ["model.d_model=64", "model.n_layers=2", "model.n_heads=2", "model.d_ff=128", "data.seq_len=64",
         "train.micro_batch_size=8"]
NORM_OVERRIDES = {
    "rmsnorm": ["model.norm.kind=rmsnorm"],
    "layernorm": ["model.norm.kind=layernorm"],
    **{f"ibnorm_{v.lower()}": ["model.norm.kind=ibnorm", f"model.norm.variant={v}", "model.norm.lam=4.0"]
       for v in "SLT"},
}


def bench_config(args, out_dir: Path, norm: str, name: str):
    steps = args.warmup + args.steps
    overrides = [
        *(QUICK if args.quick else []), *args.overrides, *NORM_OVERRIDES[norm],
        f"run_name={name}", f"out_dir={out_dir}", f"train.max_steps={steps}", f"train.log_every={args.warmup}",
        "train.checkpoint_every=0", "train.eval_every=0", "train.eval_batches=1", "train.resume=none",
        "logging.wandb='off'", "logging.progress=false",
    ]
    return load_config(args.config, overrides)


def run_trainer(cfg) -> tuple[float, float | None]:
    """Token positions per second of our trainer over the steps after warmup, and its MFU over
    the same steps (None where the trainer logs none: CPUs, GPUs missing from its table), from
    its own metrics.jsonl. Positions, as the plain loop counts them: the trainer's tokens_per_s
    counts only the targets that are not padding (fewer under data.packing=pad)."""
    train(cfg)
    plan = plan_batches(cfg.train, cfg.data.seq_len, world_size=1)
    records = read_metrics(cfg.run_dir / "metrics.jsonl")
    windows = list(zip(records, records[1:], strict=False))  # the first record closes the warmup window
    window_seconds = [(after["tokens"] - before["tokens"]) / after["tokens_per_s"] for before, after in windows]
    seconds = sum(window_seconds)
    positions = (records[-1]["step"] - records[0]["step"]) * plan.tokens_per_step
    # each window's MFU is proportional to its positions/s, so the timed steps' MFU is their
    # mean weighted by time
    mfus = [after["mfu"] for _, after in windows]
    mfu = None if None in mfus else sum(m * t for m, t in zip(mfus, window_seconds, strict=True)) / seconds
    return positions / seconds, mfu


def _device() -> torch.device:
    """Where the trainer would train in one process: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _model_and_optimizer(cfg, tokenizer, *, stock: bool):
    """Our model for ``cfg`` (or, ``stock``, transformers' own class with its weights) and AdamW,
    on the trainer's device, in its precision and with its activation checkpointing and compile."""
    set_seed(cfg.train.seed)
    model = build_model(cfg.model, len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if stock:
        model = to_stock_model(model)
    apply_compute_options(cfg, model)  # bf16-pure cast, activation checkpointing, compile: as the trainer
    model.to(_device()).train()
    opt = cfg.optim
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt.lr, betas=opt.betas, eps=opt.eps,
                                  weight_decay=opt.weight_decay, foreach=True)
    return model, optimizer


def _optimizer_step(model, optimizer, micro_batches, cfg, grad_accum: int) -> torch.Tensor:
    """The textbook step: forward (under bf16 autocast for bf16-mixed) and backward per micro
    batch, clip, AdamW step, zero_grad.

    Returns the last micro batch's loss; its ``.item()`` waits for the step to finish on a GPU.
    """
    device = _device()
    for batch in micro_batches:
        batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16-mixed"):
            loss = model(**batch).loss / grad_accum
        loss.backward()
    if cfg.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def time_interleaved_steps(cfgs: dict, warmup: int, steps: int) -> dict[str, float]:
    """Median seconds of one optimizer step of each config's model, the models stepping in turn.

    Every model trains on the same micro batches (the first ones of the training loader, reused)
    with AdamW; step i of every model runs before step i + 1 of any, so a machine that slows
    down for a while slows every contender alike. This isolates what the norm costs in a step
    from the run-to-run drift that separate training runs see.
    """
    first = next(iter(cfgs.values()))
    tokenizer = load_tokenizer(first)
    plan = plan_batches(first.train, first.data.seq_len, world_size=1)
    loader = build_train_loader(first, tokenizer, rank=0, world_size=1)
    batches = [{key: value.to(_device()) for key, value in next(loader).items()} for _ in range(plan.grad_accum)]
    contenders = {name: (*_model_and_optimizer(cfg, tokenizer, stock=False), cfg) for name, cfg in cfgs.items()}
    seconds: dict[str, list[float]] = {name: [] for name in cfgs}
    for step in range(warmup + steps):
        for name, (model, optimizer, cfg) in contenders.items():
            start = time.perf_counter()
            _optimizer_step(model, optimizer, batches, cfg, plan.grad_accum).item()
            if step >= warmup:
                seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def time_monitor_steps(cfg, warmup: int, steps: int) -> tuple[float, float]:
    """Median seconds of a plain trainer step and of a monitor step, the two in turn in one session."""
    total = 2 * (warmup + steps)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=total + 1))
    plain = dataclasses.replace(cfg, monitor=dataclasses.replace(cfg.monitor, every=0))
    monitored = dataclasses.replace(cfg, monitor=dataclasses.replace(cfg.monitor, every=1))
    session = setup(plain)
    progress = Progress(0, 0, 0)
    session.model.train()
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for step in range(total):
        on = step % 2 == 1
        session.cfg = monitored if on else plain
        set_lr(session.optimizer, lr_at(progress.step, cfg.optim, cfg.train.max_steps), cfg.optim)
        start = time.perf_counter()
        train_step(session, progress)  # one host sync: the step has finished when it returns
        if step >= 2 * warmup:
            seconds[on].append(time.perf_counter() - start)
        progress.extra.clear()
    session.tracker.close()
    session.metrics.close()
    return statistics.median(seconds[False]), statistics.median(seconds[True])


def run_plain_loop(cfg, warmup: int) -> float:
    """Tokens/s of a plain PyTorch loop over the stock transformers model."""
    tokenizer = load_tokenizer(cfg)
    plan = plan_batches(cfg.train, cfg.data.seq_len, world_size=1)
    loader = build_train_loader(cfg, tokenizer, rank=0, world_size=1)
    model, optimizer = _model_and_optimizer(cfg, tokenizer, stock=True)
    start = None
    for step in range(cfg.train.max_steps):
        if step == warmup:
            start = time.perf_counter()
        micro_batches = (next(loader) for _ in range(plan.grad_accum))
        loss = _optimizer_step(model, optimizer, micro_batches, cfg, plan.grad_accum)
    loss.item()  # wait for the last step (a no-op on CPU)
    elapsed = time.perf_counter() - start
    return (cfg.train.max_steps - warmup) * plan.tokens_per_step / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="llama_tiny_rmsnorm.yaml", help="base config (path or name in configs/)")
    parser.add_argument("--norms", nargs="+", default=None, choices=sorted(NORM_OVERRIDES),
                        help="norms to run through our trainer (default: the family's baseline)")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps at the start of every run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per contender; the best is reported")
    parser.add_argument("--quick", action="store_true", help="tiny model and 4 steps: a smoke test")
    parser.add_argument("--monitor-every", type=int, default=0, metavar="N",
                        help="also time monitor steps against plain ones: the overhead at monitor.every=N and =1")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides of the base config")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.rounds = 4, 2, 1
    if args.steps % args.warmup:
        parser.error("--steps must be a multiple of --warmup (metrics windows are --warmup steps long)")
    try:
        return _run(args)
    except (ConfigError, DataError) as err:  # as scripts/pretrain.py reports them
        print(f"config error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    # The trainer keeps freed memory for reuse when it trains on CPU (its default device without
    # CUDA); the plain loop and the interleaved steps get the same allocator.
    base = load_config(args.config, [*(QUICK if args.quick else []), *args.overrides])
    malloc = reuse_freed_memory(_device().type, base.train.reuse_freed_memory)
    check_precision(base, torch.cuda.is_available())  # the trainer's own refusal, before any run
    family = PRESETS[base.model.preset].family
    baseline = FAMILY_BASELINE_NORM[family]
    norms = args.norms or [baseline]
    results: dict[str, list[float]] = {"stock": [], **{n: [] for n in norms}}
    mfus: dict[str, list[float | None]] = {n: [] for n in norms}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for round_index in range(args.rounds):
            stock_cfg = bench_config(args, Path(tmp), baseline, f"stock_{round_index}")
            results["stock"].append(run_plain_loop(stock_cfg, args.warmup))
            for norm in norms:
                tokens_per_s, mfu = run_trainer(bench_config(args, Path(tmp), norm, f"{norm}_{round_index}"))
                results[norm].append(tokens_per_s)
                mfus[norm].append(mfu)

    plan = plan_batches(base.train, base.data.seq_len, world_size=1)
    best = {name: max(values) for name, values in results.items()}
    best_mfu = {name: values[results[name].index(best[name])] for name, values in mfus.items()}
    show_mfu = any(m is not None for m in best_mfu.values())
    print(f"model {base.model.preset} ({'quick: d_model 64, 2 layers' if args.quick else 'preset size'}), "
          f"{plan.tokens_per_step} tokens/step (micro {plan.micro_batch_size} x accum {plan.grad_accum} x "
          f"seq {base.data.seq_len}), {args.steps} timed steps, best of {args.rounds}, "
          f"{torch.get_num_threads()} threads, malloc: {malloc}")
    print(f"{'run':<26}{'tokens/s':>12}{'ms/step':>10}{'vs stock loop':>15}{'vs ' + baseline:>16}"
          + (f"{'MFU':>8}" if show_mfu else ""))
    for name, value in best.items():
        label = "plain loop, stock HF" if name == "stock" else f"our trainer, {name}"
        ms = plan.tokens_per_step / value * 1000
        vs_base = f"{best[baseline] / value:.3f}x" if name != "stock" and baseline in best else ""
        mfu = best_mfu.get(name)
        mfu_cell = (f"{mfu:>8.1%}" if mfu is not None else f"{'':>8}") if show_mfu else ""
        print(f"{label:<26}{value:>12.0f}{ms:>10.1f}{best['stock'] / value:>14.3f}x{vs_base:>16}{mfu_cell}")
    print("(ratios are step-time ratios: above 1 means slower than the reference)")

    if len(norms) > 1 or norms[0] != baseline:
        # The norms' own cost, free of the drift between separate runs: their models step in turn.
        contenders = [baseline, *(n for n in norms if n != baseline)]
        with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
            cfgs = {norm: bench_config(args, Path(tmp), norm, f"interleaved_{norm}") for norm in contenders}
            step_s = time_interleaved_steps(cfgs, args.warmup, args.steps)
        print(f"\ninterleaved model steps (our models in turn on the same batches, median of {args.steps}):")
        print(f"{'norm':<26}{'ms/step':>12}{'vs ' + baseline:>16}")
        for norm, value in step_s.items():
            print(f"{norm:<26}{value * 1000:>12.1f}{value / step_s[baseline]:>15.3f}x")

    if args.monitor_every > 0:
        with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
            plain_s, monitor_s = time_monitor_steps(bench_config(args, Path(tmp), norms[0], "monitor"),
                                                    args.warmup, args.steps)
        ratio = monitor_s / plain_s
        print(f"\nmonitor steps ({norms[0]}; plain and monitor steps in turn in one trainer session, median of "
              f"{args.steps} each):")
        print(f"{'plain step ms':>14}{'monitor step ms':>17}{'monitor.every=' + str(args.monitor_every):>22}"
              f"{'monitor.every=1':>18}")
        print(f"{plain_s * 1000:>14.1f}{monitor_s * 1000:>17.1f}{1 + (ratio - 1) / args.monitor_every:>21.4f}x"
              f"{ratio:>17.3f}x")
        print("(step-time ratios against monitor.every=0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
