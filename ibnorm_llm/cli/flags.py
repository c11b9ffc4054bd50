"""Flags several subcommands share, defined once so they read and behave the same everywhere."""

from __future__ import annotations

import argparse


def add_config(parser: argparse.ArgumentParser) -> None:
    """``--config NAME|PATH`` plus ``dotted.key=value`` overrides, as every training command takes them."""
    parser.add_argument("--config", required=True, metavar="NAME|PATH",
                        help="a config file, or the name of a shipped preset (ibnorm-llm train --list-configs)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted.key=value overrides, e.g. train.max_steps=100")


def add_out(parser: argparse.ArgumentParser, what: str, *, required: bool = False, default: str | None = None) -> None:
    suffix = f" (default {default})" if default else ""
    parser.add_argument("--out", required=required, metavar="DIR", default=None, help=f"{what}{suffix}")


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="torch CPU threads (1 is fastest for tiny models on a busy CPU); default: torch's choice")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (cuda when there is a GPU, else cpu), cpu, cuda or cuda:N")


def resolve_device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_dry_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the commands; run nothing")


def add_jobs_and_launcher(parser: argparse.ArgumentParser) -> None:
    """How the trainings of a study, ladder, sweep or the demo are started."""
    parser.add_argument("--jobs", type=positive_int, default=1, metavar="K",
                        help="trainings run at once, each with cores/K threads (default 1)")
    parser.add_argument("--launcher", metavar="CMD",
                        help="command that starts each training instead of this Python, e.g. "
                             "'accelerate launch --config_file launch/ddp.yaml' (it runs `-m ibnorm_llm train`)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be a positive integer")
    return value


def apply_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
