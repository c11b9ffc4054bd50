"""Write the task YAMLs a run evaluates: the harness's own tasks with our shots and, offline,
local data.

Each leaf task gets a YAML that ``include:``s the harness's file (prompts, metrics, filters,
``!function`` helpers all stay the harness's) and overrides only:

- ``num_fewshot``: the leaderboard's shot count (hellaswag's YAML, for one, sets none);
- offline: ``dataset_path: json``, ``dataset_name: null`` and ``dataset_kwargs.data_files``
  with one local JSONL per split.

Groups are rebuilt from the harness's group YAMLs with the same aggregation
(``aggregate_metric_list``, e.g. ``weight_by_size: true``), listing their subtasks explicitly,
so lm-eval computes group scores exactly as it does for its built-in groups. With partial
offline data a group lists only the subtasks present (and the run records which are missing).
The folder is loaded with ``TaskManager(include_path=..., include_defaults=False)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ibnorm_llm.evaluation.harness.offline import data_files
from ibnorm_llm.evaluation.harness.tasks import HarnessTask, TaskTree


def leaf_config(task: HarnessTask, num_fewshot: int, offline_data: Path | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"include": str(task.yaml_path), "task": task.name, "num_fewshot": num_fewshot}
    if offline_data is not None:
        cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": data_files(offline_data, task)})
    return cfg


def _write_yaml(path: Path, cfg: dict[str, Any]) -> None:
    # Under `accelerate launch` every rank writes the same files: rename so none reads a half-written one.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    os.replace(tmp, path)


def group_configs(tree: TaskTree, included: set[str]) -> list[dict[str, Any]]:
    """The tree's group YAMLs restricted to ``included`` leaves (empty sub-groups dropped)."""
    kept: set[str] = set(included)
    configs = []
    for group in reversed(tree.groups):  # bottom-up, so a parent sees which sub-groups survived
        children = [c for c in group.children if c in kept]
        if not children:
            continue
        kept.add(group.name)
        configs.append({**group.config, "task": children})
    return configs[::-1]


def write_task_dir(
    trees: list[TaskTree],
    task_dir: Path,
    *,
    offline_data: Path | None = None,
    included: dict[str, tuple[str, ...]] | None = None,
) -> list[str]:
    """Write one YAML per leaf task and group into ``task_dir``; return the names to evaluate.

    ``included`` maps an entry to the leaves to run (default: all of them).
    """
    task_dir = Path(task_dir)
    task_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for tree in trees:
        leaves = included[tree.spec.name] if included else tuple(leaf.name for leaf in tree.leaves)
        for leaf in tree.leaves:
            if leaf.name in leaves:
                cfg = leaf_config(leaf, tree.spec.num_fewshot, offline_data)
                _write_yaml(task_dir / f"{leaf.name}.yaml", cfg)
        for cfg in group_configs(tree, set(leaves)):
            _write_yaml(task_dir / f"_group_{cfg['group']}.yaml", cfg)
        names.append(tree.spec.name)
    return names
