"""Read lm-evaluation-harness's own task YAMLs: which leaf tasks a leaderboard entry runs, and
which dataset splits each of them reads.

The harness's task files are the single source of truth for dataset paths, split names and
group structure; nothing here copies them. YAMLs are read with the harness's own loader,
``lm_eval.tasks._yaml_loader.load_yaml`` (private API of lm-eval 0.4.13, pinned in pyproject
and exercised by tests/evaluation/test_leaderboard_tasks.py), which resolves ``include:``.

Only each entry's folder (``TaskSpec.yaml_dir``) is scanned, so this takes milliseconds where
building the harness's full task index takes tens of seconds.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ibnorm_llm.evaluation.harness.suites import TaskSpec

SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")
"""The task-config keys naming a dataset split the harness may read."""


class MissingDependencyError(ImportError):
    """A package a task needs is not installed; the message says what to pip install."""


def harness_tasks_root() -> Path:
    """``lm_eval/tasks/`` of the installed harness (found without importing lm_eval)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("lm-eval is not installed: pip install 'lm-eval==0.4.13'")
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


def load_task_yaml(path: Path) -> dict[str, Any]:
    """A harness YAML with its ``include:`` chain merged; ``!function`` tags stay unresolved strings."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(path, resolve_func=False)


@dataclass(frozen=True)
class HarnessTask:
    """One leaf task as the harness defines it."""

    name: str
    yaml_path: Path
    config: dict[str, Any]

    @property
    def dataset_path(self) -> str:
        return self.config["dataset_path"]

    @property
    def dataset_name(self) -> str | None:
        return self.config.get("dataset_name")

    @property
    def splits(self) -> tuple[str, ...]:
        """Every split the task config names (train/validation/test/few-shot), deduplicated, in order."""
        names = [self.config.get(key) for key in SPLIT_KEYS]
        return tuple(dict.fromkeys(n for n in names if n is not None))


@dataclass(frozen=True)
class HarnessGroup:
    """A harness group with its members resolved to task and group names."""

    name: str
    config: dict[str, Any]
    """The group YAML as written (group, task, aggregate_metric_list, metadata ...)."""
    children: tuple[str, ...]
    """Member names: leaf tasks and sub-groups (tags already expanded)."""


@dataclass(frozen=True)
class TaskTree:
    """A leaderboard entry resolved to the harness's leaf tasks and the groups above them."""

    spec: TaskSpec
    leaves: tuple[HarnessTask, ...]
    groups: tuple[HarnessGroup, ...]
    """Groups top-down; empty when the entry is a single task."""

    @property
    def is_group(self) -> bool:
        return bool(self.groups)


@dataclass
class _FolderIndex:
    tasks: dict[str, HarnessTask]
    groups: dict[str, dict[str, Any]]
    tags: dict[str, list[str]]


def _index_folder(folder: Path) -> _FolderIndex:
    index = _FolderIndex(tasks={}, groups={}, tags={})
    for path in sorted(folder.glob("*.yaml")):
        cfg = load_task_yaml(path)
        if "group" in cfg:
            index.groups[cfg["group"]] = cfg
        elif isinstance(cfg.get("task"), str):
            index.tasks[cfg["task"]] = HarnessTask(cfg["task"], path, cfg)
            tags = cfg.get("tag") or []
            for tag in [tags] if isinstance(tags, str) else tags:
                index.tags.setdefault(tag, []).append(cfg["task"])
    return index


def resolve_task(spec: TaskSpec) -> TaskTree:
    """The harness's leaf tasks (and groups) behind one leaderboard entry."""
    folder = harness_tasks_root() / spec.yaml_dir
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{spec.name}: harness task folder {folder} is missing; this code expects lm-eval==0.4.13"
        )
    index = _index_folder(folder)
    leaves: list[HarnessTask] = []
    groups: list[HarnessGroup] = []

    def expand(name: str) -> None:
        if name in index.tasks:
            leaves.append(index.tasks[name])
            return
        if name not in index.groups:
            raise ValueError(
                f"{spec.name}: the harness has no task or group {name!r} in {folder}; this code expects lm-eval==0.4.13"
            )
        cfg = index.groups[name]
        members = cfg["task"] if isinstance(cfg["task"], list) else [cfg["task"]]
        children: list[str] = []
        for member in members:
            if not isinstance(member, str):
                raise ValueError(f"{spec.name}: inline member {member!r} of group {name!r} is not supported")
            names = sorted(index.tags[member]) if member in index.tags else [member]
            children.extend(names)
        groups.append(HarnessGroup(name, cfg, tuple(children)))  # before its sub-groups: top-down
        for child in children:
            expand(child)

    expand(spec.name)
    return TaskTree(spec, tuple(leaves), tuple(groups))
