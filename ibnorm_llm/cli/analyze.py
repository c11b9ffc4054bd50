"""Information-bottleneck analysis of checkpoints: per-layer IB values and activation statistics.

    ibnorm-llm analyze --checkpoint runs/a/checkpoints/final runs/b/checkpoints/final --out runs/ib

Each checkpoint is analysed on its own run's held-out text (config.yaml in the checkpoint).
Writes ``analysis.json`` (one report per checkpoint), ``ib_per_layer.png`` and
``kurtosis_per_layer.png`` with the checkpoints overlaid. Defaults are ``analysis.*`` of the
config system (N = 1024 tokens, β = 1, the median_scaled kernel width).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ibnorm_llm.cli.flags import add_device, add_out, add_threads, apply_threads, positive_int, resolve_device
from ibnorm_llm.config import AnalysisConfig, ConfigError, from_dict, to_dict


def _labels(paths: list[str], given: list[str] | None) -> list[str]:
    if given is not None:
        if len(given) != len(paths):
            raise ConfigError(f"--labels has {len(given)} names for {len(paths)} checkpoints: give one per checkpoint")
        labels = given
    else:
        # runs/<run>/checkpoints/<step> -> <run>/<step>; fall back to the directory name.
        labels = []
        for path in paths:
            parts = Path(path).resolve().parts
            labels.append(f"{parts[-3]}/{parts[-1]}" if len(parts) >= 3 and parts[-2] == "checkpoints" else parts[-1])
    if len(set(labels)) != len(labels):
        raise ConfigError(f"checkpoint labels {labels} are not unique: name them with --labels")
    return labels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = AnalysisConfig()
    parser.add_argument("--checkpoint", nargs="+", required=True, metavar="DIR", help="checkpoint directories")
    add_out(parser, "output folder", required=True)
    parser.add_argument("--labels", nargs="+", help="one legend name per checkpoint (default: run/step)")
    parser.add_argument("--n-tokens", type=int, default=defaults.n_tokens, help="tokens sampled (N)")
    parser.add_argument("--beta", type=float, default=defaults.beta, help="IB trade-off β")
    parser.add_argument("--alpha", type=float, default=defaults.alpha, help="Rényi order α")
    parser.add_argument("--width-rule", default=defaults.width_rule, help="median_scaled | median | silverman")
    parser.add_argument("--target", default=defaults.target, help="next-token representation: onehot | embedding")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the token sample")
    parser.add_argument("--no-chance", action="store_true", help="skip the shuffled chance levels (faster)")
    parser.add_argument("--val-tokens", type=positive_int, help="held-out tokens to read (default: the run's data.val_tokens)")
    parser.add_argument("--layers", type=int, nargs="+", help="decoder blocks to analyse (0-based; default all)")
    add_device(parser)
    add_threads(parser)


def run(args: argparse.Namespace) -> int:
    cfg = from_dict(AnalysisConfig, {
        "n_tokens": args.n_tokens, "beta": args.beta, "alpha": args.alpha, "width_rule": args.width_rule,
        "target": args.target, "seed": args.seed, "chance": not args.no_chance,
    }, prefix="analysis.")
    if cfg.beta < 0:
        raise ConfigError(f"--beta={cfg.beta}: must be >= 0")
    labels = _labels(args.checkpoint, args.labels)
    apply_threads(args.threads)

    from ibnorm_llm.analysis.checkpoint import analyze_checkpoint
    from ibnorm_llm.analysis.plots import plot_ib, plot_kurtosis

    device = resolve_device(args.device)
    reports = {}
    for label, path in zip(labels, args.checkpoint, strict=True):
        print(f"analysing {label} ({path}) ...", file=sys.stderr)
        reports[label] = analyze_checkpoint(path, cfg, layers=args.layers, device=device, val_tokens=args.val_tokens)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(json.dumps({"analysis": to_dict(cfg), "checkpoints": reports}, indent=2))
    plot_ib(reports, out / "ib_per_layer.png")
    plot_kurtosis(reports, out / "kurtosis_per_layer.png")
    for label, report in reports.items():
        values = ", ".join(f"{row['layer']}: {row['ib_value']:.3f}" for row in report["layers"])
        print(f"{label}: IB value per block {{{values}}} ({report['seconds']['total']:.1f} s)", file=sys.stderr)
        for norm in report["norms"]:
            if norm["saturated_share"] is not None:
                kurtosis = norm["after"]["excess_kurtosis"]
                print(f"  {norm['name']}: {norm['saturated_share']:.1%} of the input past the knee, excess kurtosis "
                      f"after the norm {kurtosis if kurtosis is None else f'{kurtosis:.2f}'}", file=sys.stderr)
    print(f"wrote {out / 'analysis.json'}, {out / 'ib_per_layer.png'}, {out / 'kurtosis_per_layer.png'}", file=sys.stderr)
    return 0
