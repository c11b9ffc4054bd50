"""Measure the mutual-information estimator: dependent/independent gap per width rule, and speed.

    python scripts/bench_analysis.py            # the docs/analysis.md table: N = 1024, d = 2, 64, 512
    python scripts/bench_analysis.py --quick    # small sizes, a smoke run

Gap: I(X; X + 0.1·noise) against I(X; Y) for an independent Y with the same distribution,
for isotropic Gaussian X and for X of rank 16 embedded in d dimensions (closer to real
activations). Speed: seconds of ``ib_values`` per decoder block at N tokens and width d, with and without
the chance levels. Prints markdown.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ibnorm_llm.analysis.ib import ib_values, target_gram
from ibnorm_llm.analysis.renyi import WIDTH_RULES, mutual_information

NOISE = 0.1
RANK = 16


def sample_pair(kind: str, n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(X, X + noise, independent Y) for ``kind`` isotropic or low-rank."""
    g = torch.Generator().manual_seed(seed)
    if kind == "isotropic":
        x, y = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    else:
        basis = torch.randn(RANK, d, generator=g) / RANK**0.5
        x = torch.randn(n, RANK, generator=g) @ basis + 0.1 * torch.randn(n, d, generator=g)
        y = torch.randn(n, RANK, generator=g) @ basis + 0.1 * torch.randn(n, d, generator=g)
    noisy = x + NOISE * x.std() * torch.randn(n, d, generator=g)
    return x, noisy, y


def gap_table(n: int, cases: list[tuple[str, int]], seeds: int) -> str:
    lines = [
        "| data | d | width rule | I(X; X+noise) | I(X; Y indep.) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for kind, d in cases:
        for rule in WIDTH_RULES:
            dependent, independent = [], []
            for seed in range(seeds):
                x, noisy, y = sample_pair(kind, n, d, seed)
                dependent.append(mutual_information(x, noisy, width_rule=rule))
                independent.append(mutual_information(x, y, width_rule=rule))
            dep, ind = statistics.mean(dependent), statistics.mean(independent)
            ratio = f"{dep / ind:.2f}" if ind > 1e-12 else "inf"
            lines.append(f"| {kind} | {d} | {rule} | {dep:.4f} | {ind:.4f} | {ratio} |")
    return "\n".join(lines)


def time_blocks(n: int, d: int, repeats: int, blocks: int = 4) -> str:
    """Seconds for the first block (which also pays for S(Y) and its input's Gram matrix) and
    for each further block of a full pass (one new Gram matrix, the rest reused)."""
    g = torch.Generator().manual_seed(0)
    states = [torch.randn(n, d, generator=g) for _ in range(blocks + 1)]
    targets = torch.randint(0, 4096, (n,), generator=g)

    def best_of(layers: list[int], chance: bool) -> float:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            ib_values(states, target_gram(targets), layers=layers, chance=chance)
            best = min(best, time.perf_counter() - started)
        return best

    lines = [f"| N = {n}, d = {d} (best of {repeats}) | first block | each further block |", "|---|---|---|"]
    for chance in (False, True):
        first = best_of([0], chance)
        further = (best_of(list(range(blocks)), chance) - first) / (blocks - 1)
        label = "with chance levels" if chance else "without chance levels"
        lines.append(f"| {label} | {first:.2f} s | {further:.2f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds averaged per gap-table row")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        n, cases, d_speed, repeats = 128, [("isotropic", 2), ("isotropic", 32)], 32, 1
    else:
        n, cases, d_speed, repeats = 1024, [("isotropic", 2), ("isotropic", 64), ("isotropic", 512),
                                            ("low-rank", 512)], 512, 3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(f"Dependent/independent gap, N = {n}, mean of {args.seeds} seeds:\n")
    print(gap_table(n, cases, args.seeds))
    print("\nSpeed:\n")
    print(time_blocks(n, d_speed, repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
