"""``ibnorm-llm <command> ...``: the dispatcher. Subcommand modules are imported only when run."""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ibnorm_llm.cli.errors import call_reporting_errors


@dataclass(frozen=True)
class Command:
    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    "train": Command("ibnorm_llm.cli.train", "pretrain a model from a run config (under accelerate launch too)"),
    "eval": Command("ibnorm_llm.cli.eval", "evaluate a checkpoint: Open LLM Leaderboard I/II or the small suite"),
    "compare": Command("ibnorm_llm.cli.compare", "comparison tables and plots across evaluated runs"),
    "study": Command("ibnorm_llm.cli.study", "a tuned, multi-seed comparison of arms from a study file"),
    "ladder": Command("ibnorm_llm.cli.ladder", "a norm scaling ladder: laws per arm, a held-out check, crossovers"),
    "sweep": Command("ibnorm_llm.cli.sweep", "a grid over config keys, run as a study"),
    "demo": Command("ibnorm_llm.cli.demo", "the offline demo: tiny RMSNorm vs IBNorm-S/L/T, trained and compared"),
    "health": Command("ibnorm_llm.cli.health", "the health report of monitored runs: heatmaps, curves, spikes"),
    "analyze": Command("ibnorm_llm.cli.analyze", "information-bottleneck analysis of checkpoints"),
    "export": Command("ibnorm_llm.cli.export", "export a baseline-norm checkpoint as a stock transformers model"),
    "prefetch": Command("ibnorm_llm.cli.prefetch", "download evaluation data for offline use"),
    "tokenizer": Command("ibnorm_llm.cli.tokenizer", "train a SentencePiece tokenizer on a config's corpus"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: ibnorm-llm <command> [options]   (also: python -m ibnorm_llm <command>)", "",
             "Pretrain and compare language models with swappable normalization layers.", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "ibnorm-llm <command> --help shows a command's options; ibnorm-llm --version the installed package.",
              "Exit status: 0 done, 2 bad input (one line naming it), 3 non-finite loss, 1 could not finish."]
    return "\n".join(lines)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("ibnorm_llm")
    except PackageNotFoundError:
        number = "unknown (not installed)"
    import ibnorm_llm

    return f"ibnorm-llm {number} ({Path(ibnorm_llm.__file__).resolve().parent})"


def build_parser(name: str, prog: str | None = None) -> tuple[argparse.ArgumentParser, object]:
    """The argument parser of subcommand ``name`` and its module."""
    module = importlib.import_module(COMMANDS[name].module)
    parser = argparse.ArgumentParser(prog=prog or f"ibnorm-llm {name}", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    return parser, module


def run_command(name: str, argv: Sequence[str], prog: str | None = None) -> int:
    """Parse ``argv`` for subcommand ``name`` and run it; errors become exit codes (cli.errors)."""
    parser, module = build_parser(name, prog)
    args = parser.parse_args(list(argv))
    return call_reporting_errors(module.run, args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(_version())
        return 0
    name = argv[0]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        print(f"error: unknown command '{name}'; {hint}commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return run_command(name, argv[1:])


def script_main(name: str) -> None:
    """Entry of a script shim (scripts/pretrain.py and the like): the subcommand under the script's name."""
    sys.exit(run_command(name, sys.argv[1:], prog=Path(sys.argv[0]).name))
