"""Grid sweeps over any config keys: one config file per grid point, run one after another.

    python scripts/sweep.py --config llama60m_ibnorm_l.yaml \\
        --grid model.norm.variant=S,L,T model.norm.lam=2,3,4,5 train.seed=0,1,2 [--run]

Writes ``sweeps/<name>/<run_name>.yaml`` per point (the fully resolved config) plus
``commands.sh`` (absolute paths, ``train.resume=auto``: rerunnable from any directory after a
failure); every point is validated through the config system before anything runs.
Each run is named after its settings, e.g. ``llama60m_ibnorm_vL_lam4_seed0``. Without
``--run`` the launch commands are printed; with it they run in order and the sweep stops at
the first failure. Seeds are an axis like any other: a single-seed norm comparison is not
evidence.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ibnorm_llm.config import ConfigError, load_config, parse_override, resolve_config_path, save_config

# Short names for common axes in run names; other keys use their last component.
AXIS_LABELS = {"model.norm.variant": "v", "model.norm.lam": "lam", "train.seed": "seed", "optim.lr": "lr"}
ROOT = Path(__file__).resolve().parent.parent


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


def _format_value(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def run_name_for(base_name: str, point: dict) -> str:
    """Base run name plus one label per axis; a trailing variant letter is dropped when swept."""
    if "model.norm.variant" in point:
        base_name = re.sub(r"_ibnorm_[slt]$", "_ibnorm", base_name)
    labels = [f"{AXIS_LABELS.get(k, k.rsplit('.', 1)[-1])}{_format_value(v)}" for k, v in point.items()]
    return "_".join([base_name, *labels])


def build_sweep(base: str, grid: dict[str, list], fixed: list[str]) -> list[tuple[str, list[str]]]:
    """(run_name, overrides) per grid point; every point is validated here."""
    base_cfg = load_config(base, fixed)
    points = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values, strict=True))
        name = run_name_for(base_cfg.run_name, point)
        overrides = [*fixed, *(f"{k}={json.dumps(v)}" for k, v in point.items()), f"run_name={name}"]
        load_config(base, overrides)
        points.append((name, overrides))
    names = [n for n, _ in points]
    if len(set(names)) != len(names):
        raise ConfigError("--grid: two grid points got the same run name; give each axis distinct values")
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="base config (path or name in configs/)")
    parser.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2", help="axes of the grid")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every point")
    parser.add_argument("--out", help="sweep folder (default sweeps/<base>_<timestamp>)")
    parser.add_argument("--launcher", default=f"{shlex.quote(sys.executable)} {shlex.quote(str(ROOT / 'scripts' / 'pretrain.py'))}",
                        help="command that runs one config, e.g. 'accelerate launch --config_file "
                             "launch/ddp.yaml scripts/pretrain.py' (relative paths mean the current directory)")
    parser.add_argument("--run", action="store_true", help="run the points one after another")
    args = parser.parse_args(argv)
    try:
        grid = parse_grid(args.grid)
        points = build_sweep(args.config, grid, args.set)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    base_stem = resolve_config_path(args.config).stem
    out = Path(args.out or f"sweeps/{base_stem}_{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    # Every run starts in this directory (--run and commands.sh alike), so the relative paths of the
    # configs (out_dir, data, tokenizer) and of --launcher mean what they mean here.
    workdir = Path.cwd().resolve()
    out.mkdir(parents=True, exist_ok=True)
    commands = []
    for name, overrides in points:
        path = out / f"{name}.yaml"
        save_config(load_config(args.config, overrides), path)
        # resume=auto: a rerun after a failure continues unfinished runs and does not retrain finished ones
        commands.append(f"{args.launcher} --config {shlex.quote(str(path))} train.resume=auto")
    (out / "commands.sh").write_text(
        "#!/bin/sh\n# Written by scripts/sweep.py. Rerun it as it is after a failure, from any directory: each run\n"
        "# continues from its last checkpoint (train.resume=auto) and finished runs end at once.\n"
        f"set -e\ncd {shlex.quote(str(workdir))}\n" + "\n".join(commands) + "\n"
    )
    (out / "sweep.json").write_text(json.dumps({"base": args.config, "grid": grid, "set": args.set,
                                                "runs": [n for n, _ in points]}, indent=2) + "\n")
    print(f"{len(points)} configs in {out}", file=sys.stderr)
    if not args.run:
        print("\n".join(commands))
        return 0
    for i, ((name, _), command) in enumerate(zip(points, commands, strict=True)):
        print(f"[{i + 1}/{len(points)}] {name}", file=sys.stderr, flush=True)
        code = subprocess.run(shlex.split(command), cwd=workdir).returncode
        if code != 0:
            remaining = [n for n, _ in points[i + 1:]]
            print(f"sweep stopped: run {name} failed with exit status {code}. Not started: "
                  f"{', '.join(remaining) or 'none'}. Rerun after fixing it (train.resume=auto continues "
                  f"finished runs from their checkpoints): sh {out / 'commands.sh'}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
