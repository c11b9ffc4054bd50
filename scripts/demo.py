"""`make demo`: tiny LLaMA with RMSNorm and IBNorm-S, -L, -T, trained, evaluated and compared.

    python scripts/demo.py                      # runs/demo/comparison.md + loss_curves.png
    python scripts/demo.py --steps 60           # shorter

Every run uses the same seed, data (the built-in offline corpus), tokenizer and schedule;
only the norm differs. The report leads with what means something: the trainer's final
held-out (validation) and test-split loss and bits per byte, and the loss curves. The pipeline
is train_all() -> held_out_table() -> write_report(); the offline smoke of the leaderboard
suites on every final checkpoint follows in a section marked as a pipeline check (skip it with
--no-leaderboard). For a comparison that can support a claim, run a study (make study).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ibnorm_llm.config import ConfigError, RunConfig, load_config
from ibnorm_llm.data import DataError
from ibnorm_llm.train.metrics import read_metrics
from ibnorm_llm.train.trainer import TrainResult, train

DEMO_DIR = Path("runs/demo")
# run name -> overrides of the tiny LLaMA config; the IBNorm variants at the paper's lambda = 4.
DEMO_RUNS: dict[str, list[str]] = {
    "llama_tiny_rmsnorm": ["model.norm.kind=rmsnorm"],
    "llama_tiny_ibnorm_s": ["model.norm.kind=ibnorm", "model.norm.variant=S", "model.norm.lam=4.0"],
    "llama_tiny_ibnorm_l": ["model.norm.kind=ibnorm", "model.norm.variant=L", "model.norm.lam=4.0"],
    "llama_tiny_ibnorm_t": ["model.norm.kind=ibnorm", "model.norm.variant=T", "model.norm.lam=4.0"],
}
BASE_CONFIG = "llama_tiny_rmsnorm.yaml"
OFFLINE_DATA = Path(__file__).resolve().parent.parent / "eval" / "offline_data"
# Half the tiny config's micro batch, so that four runs fit the demo's time budget on 2 cores.
DEMO_SETTINGS = ["train.micro_batch_size=8", "optim.warmup_steps=25", "train.eval_batches=8",
                 "data.test_fraction=0.05", "eval.test=true"]


@dataclass(frozen=True)
class DemoRun:
    cfg: RunConfig
    result: TrainResult
    seconds: float


def train_all(out_dir: Path, steps: int, overrides: list[str]) -> list[DemoRun]:
    """Train every demo run from scratch; same seed and data, only the norm differs."""
    runs = []
    for name, norm in DEMO_RUNS.items():
        cfg = load_config(BASE_CONFIG, [
            *DEMO_SETTINGS, *norm, f"run_name={name}", f"out_dir={out_dir}", f"train.max_steps={steps}",
            f"train.eval_every={max(1, steps // 4)}", f"train.checkpoint_every={steps}", "train.resume=none",
            "train.overwrite=true",  # the demo starts afresh each time: it replaces its own earlier runs
            "logging.wandb='off'", *overrides,
        ])
        print(f"== training {name} ({steps} steps)", file=sys.stderr, flush=True)
        start = time.perf_counter()
        result = train(cfg)
        runs.append(DemoRun(cfg, result, time.perf_counter() - start))
    return runs


def held_out_table(runs: list[DemoRun]) -> list[dict]:
    """One row per run: norm settings, amount trained, final train loss, held-out (validation) and
    test loss, perplexity and bits per byte from the final metrics record, speed."""
    rows = []
    for run in runs:
        norm, result = run.cfg.model.norm, run.result
        final = read_metrics(result.run_dir / "metrics.jsonl")[-1]
        rows.append({
            "run": run.cfg.run_name, "norm": norm.kind, "variant": norm.variant or "-",
            "lam": f"{norm.lam:g}" if norm.lam is not None else "-", "steps": result.steps, "tokens": result.tokens,
            "train_loss": result.train_loss, "eval_loss": result.eval_loss,
            "eval_ppl": math.exp(result.eval_loss) if result.eval_loss is not None else None,
            "eval_bpb": final.get("eval_bpb"), "test_loss": final.get("test_loss"), "test_bpb": final.get("test_bpb"),
            "tokens_per_s": result.tokens_per_s, "seconds": run.seconds,
        })
    return rows


def plot_loss_curves(runs: list[DemoRun], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        records = read_metrics(run.result.run_dir / "metrics.jsonl")
        line, = ax.plot([r["step"] for r in records], [r["loss"] for r in records], label=f"{run.cfg.run_name} train")
        evals = [r for r in records if "eval_loss" in r]
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o--", color=line.get_color(),
                label=f"{run.cfg.run_name} held-out")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title("tiny LLaMA on the built-in corpus: norms compared (same seed and data)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


SMOKE_SUITES = (("all", "Leaderboard I + II (offline smoke)", ""), ("small", "Small-model suite (offline smoke)", "small"))
"""(suite, table title, sub-folder of the eval folder) evaluated on every checkpoint."""


def _demoted(markdown: str) -> str:
    """Headings one level down, so the tables sit under the pipeline-check section."""
    return "\n".join("##" + line if line.startswith("#") else line for line in markdown.splitlines())


def leaderboard_section(runs: list[DemoRun], eval_dir: Path) -> str:
    """Both leaderboards and the small suite, offline smoke setting, on every final checkpoint; the
    comparison tables (relative to RMSNorm) as markdown under a pipeline-check header; comparison.md/.csv
    and plots are also written to ``eval_dir`` (the small suite's to ``eval_dir/small``)."""
    import torch

    from ibnorm_llm.evaluation import run_leaderboard
    from ibnorm_llm.evaluation.comparison import to_markdown, write_comparison

    # Tiny models: one thread avoids thread-pool overhead that dominates generation at this size.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tables = []
    try:
        for suite, title, folder in SMOKE_SUITES:
            result_dirs = []
            for run in runs:
                print(f"== {title} on {run.cfg.run_name}", file=sys.stderr, flush=True)
                out = eval_dir / folder / run.cfg.run_name
                run_leaderboard(run.result.final_checkpoint, suite, out, offline_data=OFFLINE_DATA, smoke=True)
                result_dirs.append(out)
            comparison = write_comparison(result_dirs, eval_dir / folder, title=title)
            tables.append(_demoted(to_markdown(comparison, title=title).rstrip()))
    finally:
        torch.set_num_threads(threads)
    header = ("## Pipeline check: evaluation smoke, not a result\n\n"
              "This section shows that the evaluation pipeline runs end to end on every checkpoint, on the "
              "offline smoke data (eval/offline_data: a few handwritten items per task, partial groups). "
              "**These scores mean nothing about model quality; do not read them as a comparison of norms.** "
              f"Per-run raw harness JSON, per-sample logs and summary.json are in {eval_dir}/[small/]<run>/.")
    return "\n\n".join([header, *tables])


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def write_report(rows: list[dict], out_dir: Path, sections: Sequence[str] = ()) -> Path:
    """runs/demo/comparison.md: the held-out table, the plot, then any extra markdown sections."""
    best = min((r["eval_loss"] for r in rows if r["eval_loss"] is not None), default=None)
    lines = [
        "# Demo: tiny LLaMA, RMSNorm vs IBNorm-S/L/T",
        "",
        "Same seed, data, tokenizer and schedule for every run; only the norm differs. "
        f"One seed, one learning rate and {max(r['steps'] for r in rows)} steps: this shows the pipeline working end "
        "to end, it is not evidence that one norm beats another. At one learning rate and one seed a norm can look "
        "broken or fine; `make study` tunes every norm's learning rate on validation and reports test numbers over "
        "several seeds.",
        "",
        "## Held-out and test loss",
        "",
        "| run | norm | variant | λ | steps | tokens | final train loss | held-out loss | held-out bpb | test loss "
        "| test bpb | held-out ppl | tokens/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mark = " **(best)**" if r["eval_loss"] is not None and r["eval_loss"] == best else ""
        lines.append(
            f"| {r['run']} | {r['norm']} | {r['variant']} | {r['lam']} | {r['steps']} | {r['tokens']:,} | "
            f"{_fmt(r['train_loss'], '.4f')} | {_fmt(r['eval_loss'], '.4f')}{mark} | {_fmt(r['eval_bpb'], '.4f')} | "
            f"{_fmt(r['test_loss'], '.4f')} | {_fmt(r['test_bpb'], '.4f')} | {_fmt(r['eval_ppl'], '.1f')} | "
            f"{_fmt(r['tokens_per_s'], '.0f')} |"
        )
    lines += ["", "Held-out: the validation split the trainer evaluates during training; test: a split of its own "
              "(data.test_fraction), evaluated once on the final model. bpb: bits per byte, loss · tokens / "
              "(ln 2 · bytes), comparable across tokenizers. Train loss is the mean over the last logging window; "
              "tokens/s excludes evaluation and checkpoint time and was measured on this machine during this run.", "",
              "![loss curves](loss_curves.png)", ""]
    for section in sections:
        lines += [section.rstrip(), ""]
    path = out_dir / "comparison.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps per run")
    parser.add_argument("--out", type=Path, default=DEMO_DIR, help="demo folder (default runs/demo)")
    parser.add_argument("--no-leaderboard", dest="leaderboard", action="store_false",
                        help="skip the offline leaderboard smoke evaluation")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides for every run")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        runs = train_all(args.out, args.steps, args.overrides)
    except (ConfigError, DataError) as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    rows = held_out_table(runs)
    plot_loss_curves(runs, args.out / "loss_curves.png")
    leaderboard = leaderboard_section(runs, args.out / "leaderboard") if args.leaderboard else None
    report = write_report(rows, args.out, sections=[leaderboard] if leaderboard else ())
    print(f"wrote {report} and {args.out / 'loss_curves.png'} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
