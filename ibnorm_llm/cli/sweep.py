"""A grid over config keys, run as a study: one arm per grid point, compared with the first.

    ibnorm-llm sweep --config llama60m_ibnorm_l.yaml \\
        --grid model.norm.variant=S,L,T model.norm.lam=2,3,4,5 train.seed=0,1,2           # the plan
    ibnorm-llm sweep --config llama_tiny_ibnorm_l.yaml --grid model.norm.lam=2,4 --run --jobs 2

The grid is written as a study file, <out>/study.yaml, and run by the study runner: each point is an
arm named after its settings (e.g. vL_lam4), the first point is the baseline the others are compared
with, and the values of train.seed become the study's seeds (a seed also sets data.shuffle_seed;
without train.seed in the grid, the config's train.seed is the one seed). Every point is validated
before anything runs. Without --run the plan and its commands are printed; with it the runs train
and <out>/report.md compares them. Rerunning continues where it stopped, as does
`ibnorm-llm study --study <out>/study.yaml --out <out>`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from ibnorm_llm.cli.flags import add_jobs_and_launcher, add_out
from ibnorm_llm.config import ConfigError, load_config, parse_override, resolve_config_path

AXIS_LABELS = {"model.norm.variant": "v", "model.norm.lam": "lam", "optim.lr": "lr"}
"""Short names of common axes in arm names; other keys use their last component."""
SEED_AXIS = "train.seed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="NAME|PATH", help="base config (a path or a preset name)")
    parser.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2", help="axes of the grid")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every point")
    add_out(parser, "sweep folder", default="runs/sweep/<config>")
    parser.add_argument("--run", action="store_true", help="train the points and write the report (default: the plan)")
    add_jobs_and_launcher(parser)

def parse_grid(items: list[str]) -> dict[str, list]:
    """``key=a,b,c`` items -> {key: [a, b, c]} with each value parsed as YAML."""
    grid: dict[str, list] = {}
    for item in items:
        key, raw = item.split("=", 1) if "=" in item else (item, "")
        values = [parse_override(f"{key}={v}")[1] for v in raw.split(",") if v.strip()]
        if not key or not values:
            raise ConfigError(f"--grid {item!r}: expected dotted.key=v1,v2,... e.g. model.norm.lam=2,3,4,5")
        if key in grid:
            raise ConfigError(f"--grid: {key} given twice; list all its values in one item")
        grid[key] = values
    return grid


def _level(key: str, value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{AXIS_LABELS.get(key, key.rsplit('.', 1)[-1])}{value}"


def sweep_study(config: str, grid: dict[str, list], fixed: list[str]) -> dict[str, Any]:
    """The study file of a sweep: an arm_grid of the non-seed axes, the seeds from train.seed."""
    base = resolve_config_path(config)
    overrides = dict(parse_override(item) for item in fixed)
    seeds = grid.get(SEED_AXIS) or [load_config(base, fixed).train.seed]
    axes = {key: values for key, values in grid.items() if key != SEED_AXIS}
    if not axes:
        raise ConfigError(f"--grid: only {SEED_AXIS} is swept; add an axis to compare (e.g. model.norm.lam=2,4), "
                          "or train one config at several seeds with `ibnorm-llm train`")
    arm_grid = {key: {_level(key, v): {key: v} for v in values} for key, values in axes.items()}
    first = "_".join(next(iter(levels)) for levels in arm_grid.values())
    return {"name": f"{base.stem}_sweep", "base": str(base.resolve()), "overrides": overrides,
            "arm_grid": arm_grid, "baseline": first, "seeds": list(seeds)}


def run(args: argparse.Namespace) -> int:
    from ibnorm_llm.cli.study import describe_plan
    from ibnorm_llm.study import StudyRunner, build_plan, write_report
    from ibnorm_llm.study.spec import parse_study

    data = sweep_study(args.config, parse_grid(args.grid), args.set)
    out = Path(args.out) if args.out else Path("runs/sweep") / resolve_config_path(args.config).stem
    plan = build_plan(parse_study(data, source="--grid"), out)  # validates every point before anything is written
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    if not args.run:
        print(describe_plan(plan, args.launcher))
        print(f"study file: {out / 'study.yaml'}; add --run to train", file=sys.stderr)
        return 0
    results = StudyRunner(plan, launcher=args.launcher, jobs=args.jobs).run()
    print(f"wrote {write_report(results)}", file=sys.stderr)
    return 0
