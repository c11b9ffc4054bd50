"""Forward+backward time and saved-activation memory of every registered norm, against LayerNorm.

    python scripts/bench_norms.py                 # (8192,512), (8192,768), (4096,2048), fp32
    python scripts/bench_norms.py --quick         # small shapes, a smoke run
    python scripts/bench_norms.py --device cuda --dtype bfloat16

Candidates are timed side by side in one process, round-robin (every repetition runs each
candidate once, in turn), and the median is reported, so background load hits all of them
alike. "saved" is the bytes autograd keeps for the backward (summed over the tensors seen
by ``torch.autograd.graph.saved_tensors_hooks`` in one forward). Ratios are against
``F.layer_norm`` for time and ``nn.LayerNorm`` for saved bytes. On CUDA the achieved memory
bandwidth of each candidate is the minimum traffic of a norm's forward+backward (read x,
write y; read x and dy, write dx) over its time. On CPU, freed memory is kept for reuse as in
training (``ibnorm_llm/train/cpu_memory.py``, ``train.reuse_freed_memory``), so the timings are
the kernels' and not the page faults' of fresh allocations (which dominate 4096 x 2048).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ibnorm_llm.norms import NORMS, build_norm
from ibnorm_llm.train.cpu_memory import reuse_freed_memory

FULL_SHAPES = ((8192, 512), (8192, 768), (4096, 2048))
QUICK_SHAPES = ((256, 128), (512, 256))


@dataclass
class Row:
    shape: str
    norm: str
    ms: float
    time_ratio: float
    saved_mb: float
    saved_ratio: float
    gb_per_s: float | None


def _candidates(width: int, device: torch.device, dtype: torch.dtype, kinds: list[str], with_reference: bool
                ) -> dict[str, nn.Module | Callable]:
    """Name -> module (or the F.layer_norm baseline) for each of ``kinds`` at its defaults."""
    weight = torch.ones(width, device=device, dtype=dtype, requires_grad=True)
    bias = torch.zeros(width, device=device, dtype=dtype, requires_grad=True)
    out: dict[str, nn.Module | Callable] = {"F.layer_norm": lambda x: F.layer_norm(x, (width,), weight, bias)}
    for kind in kinds:
        if kind == "ibnorm":
            for variant in ("S", "L", "T"):
                out[f"ibnorm-{variant}"] = build_norm(kind, width, variant=variant)
            if with_reference:
                out["ibnorm-L (reference)"] = build_norm(kind, width, variant="L", impl="reference")
        else:
            out[kind] = build_norm(kind, width)
    return {name: m.to(device=device, dtype=dtype) if isinstance(m, nn.Module) else m for name, m in out.items()}


def _saved_bytes(fn: Callable, x: torch.Tensor) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return total


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_round_robin(fns: dict[str, Callable], x: torch.Tensor, grad: torch.Tensor, reps: int, warmup: int,
                      budget_s: float) -> dict[str, float]:
    """Median seconds of one forward+backward per candidate, candidates interleaved.

    A candidate whose warm-up call is slow gets fewer repetitions (at least 3), so that one
    slow norm keeps to about ``budget_s`` seconds.
    """

    def step(fn: Callable) -> None:
        x.grad = None
        fn(x).backward(grad)

    reps_for = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            _sync(x.device)
            start = time.perf_counter()
            step(fn)
            _sync(x.device)
        reps_for[name] = max(3, min(reps, int(budget_s / max(time.perf_counter() - start, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(reps):
        for name, fn in fns.items():
            if i >= reps_for[name]:
                continue
            _sync(x.device)
            start = time.perf_counter()
            step(fn)
            _sync(x.device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_shape(rows: int, width: int, device: torch.device, dtype: torch.dtype, kinds: list[str], reps: int,
                warmup: int, budget_s: float, with_reference: bool) -> list[Row]:
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(rows, width, generator=gen, device=device, dtype=dtype).requires_grad_()
    grad = torch.randn(rows, width, generator=gen, device=device, dtype=dtype)
    fns = _candidates(width, device, dtype, kinds, with_reference)
    seconds = _time_round_robin(fns, x, grad, reps, warmup, budget_s)
    saved = {name: _saved_bytes(fn, x) for name, fn in fns.items()}
    layer_norm_saved = _saved_bytes(nn.LayerNorm(width, device=device, dtype=dtype), x)
    traffic = 5 * x.numel() * x.element_size()  # forward: x, y; backward: x, dy, dx
    return [
        Row(
            shape=f"{rows}x{width}", norm=name, ms=seconds[name] * 1e3,
            time_ratio=seconds[name] / seconds["F.layer_norm"],
            saved_mb=saved[name] / 2**20, saved_ratio=saved[name] / layer_norm_saved,
            gb_per_s=traffic / seconds[name] / 1e9 if device.type == "cuda" else None,
        )
        for name in fns
    ]


def format_table(rows: list[Row]) -> str:
    bandwidth = any(r.gb_per_s is not None for r in rows)
    head = "| shape | norm | fwd+bwd ms | x F.layer_norm | saved MB | x nn.LayerNorm |" + (" GB/s |" if bandwidth else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = f"| {r.shape} | {r.norm} | {r.ms:.2f} | {r.time_ratio:.2f} | {r.saved_mb:.1f} | {r.saved_ratio:.2f} |"
        if bandwidth:
            line += f" {r.gb_per_s:.0f} |"
        lines.append(line)
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small shapes and few repetitions (a smoke run)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per candidate (default 30, quick 5)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--norms", default=",".join(NORMS), help=f"comma-separated registry names (default: all: {','.join(NORMS)})")
    p.add_argument("--budget", type=float, default=3.0, help="seconds of timing per slow candidate and shape (default 3)")
    p.add_argument("--reference", action="store_true", help="also time the readable reference IBNorm-L (slow)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.reps is not None and args.reps < 1:
        p.error(f"--reps={args.reps}: must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads={args.threads}: must be at least 1")
    unknown = [k for k in args.norms.split(",") if k not in NORMS]
    if unknown:
        p.error(f"--norms: unknown {', '.join(unknown)}; registered: {', '.join(NORMS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device={args.device}: CUDA is not available here; use --device cpu")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    # As in training (see ibnorm_llm/train/cpu_memory.py): freed blocks are reused, so the timings
    # are the kernels', not the page faults' of fresh allocations (which otherwise dominate 4096x2048).
    malloc = reuse_freed_memory(device.type)
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    reps = args.reps or (5 if args.quick else 30)
    warmup = 1 if args.quick else 3
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"# bench_norms: {where}, {args.dtype}, torch {torch.__version__}, median of {reps} interleaved reps, "
          f"malloc: {malloc}\n")
    rows: list[Row] = []
    for n_rows, width in shapes:
        rows += bench_shape(n_rows, width, device, dtype, args.norms.split(","), reps, warmup, args.budget, args.reference)
    print(format_table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": where, "dtype": args.dtype, "rows": [asdict(r) for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
