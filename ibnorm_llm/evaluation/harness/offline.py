"""Offline task data: the on-disk layout, what a run would miss, and switching the Hub off.

Layout (written by ``ibnorm-llm prefetch``; a small handwritten copy ships with the package, ``--offline-data builtin``)::

    DIR/<leaf task>/<split>.jsonl               one JSON object per line, the dataset's own fields
    DIR/nltk_data/tokenizers/punkt_tab/english  optional: NLTK's sentence splitter for ifeval

A leaf task is what the harness evaluates (``mmlu_anatomy``, ``leaderboard_bbh_navigate``);
its splits are every split its harness YAML names (train, validation, test, few-shot), so the
few-shot sampler reads the same split it reads online.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ibnorm_llm.evaluation.harness.tasks import HarnessTask, TaskTree

OFFLINE_ENV = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
NLTK_SUBDIR = "nltk_data"


class OfflineDataError(ValueError):
    """Offline task data that cannot serve the requested tasks; the message lists what is missing."""


def split_file(data_dir: Path, task: str, split: str) -> Path:
    return Path(data_dir) / task / f"{split}.jsonl"


def data_files(data_dir: Path, task: HarnessTask) -> dict[str, str]:
    """``{split: absolute path}`` for the harness's ``dataset_kwargs.data_files``."""
    return {split: str(split_file(data_dir, task.name, split).resolve()) for split in task.splits}


def _missing_files(data_dir: Path, task: HarnessTask) -> list[Path]:
    files = [split_file(data_dir, task.name, split) for split in task.splits]
    return [f for f in files if not f.is_file() or f.stat().st_size == 0]


@dataclass(frozen=True)
class Coverage:
    """Which leaf tasks of one leaderboard entry the offline data can serve."""

    included: tuple[str, ...]
    missing: dict[str, tuple[str, ...]]
    """Leaf task -> its missing split files."""

    @property
    def partial(self) -> bool:
        return bool(self.missing) and bool(self.included)


def coverage(tree: TaskTree, data_dir: Path) -> Coverage:
    included, missing = [], {}
    for leaf in tree.leaves:
        files = _missing_files(data_dir, leaf)
        if files:
            missing[leaf.name] = tuple(str(f) for f in files)
        else:
            included.append(leaf.name)
    return Coverage(tuple(included), missing)


def check_offline_data(
    trees: list[TaskTree], data_dir: Path, *, allow_partial_groups: bool = False
) -> dict[str, Coverage]:
    """Coverage of every entry; raises :class:`OfflineDataError` listing everything missing.

    A task (or group) with no offline data at all is always an error. A group with only some
    of its subtasks is an error unless ``allow_partial_groups``: then the group is scored on
    the subtasks present, and the caller records which ones.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise OfflineDataError(
            f"--offline-data {data_dir}: no such directory; use builtin (the smoke data shipped with the package) or a folder written by `ibnorm-llm prefetch`"
        )
    result = {tree.spec.name: coverage(tree, data_dir) for tree in trees}
    problems = []
    for tree in trees:
        cov = result[tree.spec.name]
        if not cov.missing:
            continue
        if cov.included and allow_partial_groups:
            continue
        listed = "; ".join(f"{leaf}: {', '.join(files)}" for leaf, files in cov.missing.items())
        if cov.included:
            problems.append(
                f"{tree.spec.name}: {len(cov.missing)} of {len(tree.leaves)} subtasks have no offline data "
                f"({', '.join(cov.missing)}); files missing: {listed}"
            )
        else:
            problems.append(f"{tree.spec.name}: no offline data; files missing: {listed}")
    if problems:
        hint = (
            "Fetch the real data with `ibnorm-llm prefetch --out DIR` on a connected machine"
            + ("" if allow_partial_groups else ", or pass --allow-partial-groups (implied by --smoke) to score "
               "groups on the subtasks that are present")
            + "."
        )
        raise OfflineDataError(f"offline data in {data_dir} is incomplete:\n  " + "\n  ".join(problems) + "\n" + hint)
    return result


def enable_offline_mode() -> None:
    """Stop datasets and huggingface_hub from touching the network, also if already imported."""
    os.environ.update(OFFLINE_ENV)
    # Both libraries read these variables once, at import: patch the constants if a caller
    # (a test, a notebook) imported them first.
    if "datasets" in sys.modules:
        import datasets.config

        datasets.config.HF_DATASETS_OFFLINE = True
        datasets.config.HF_HUB_OFFLINE = True
    if "huggingface_hub" in sys.modules:
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face Hub cannot be reached (an offline switch that is set, or no connection
    within ``timeout`` seconds), or None when it can."""
    switches = [f"{key}={os.environ[key]}" for key in OFFLINE_ENV
                if os.environ.get(key, "").strip().upper() in ("1", "ON", "YES", "TRUE")]
    if switches:
        return f"{' and '.join(switches)} {'is' if len(switches) == 1 else 'are'} set"
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return f"no connection to {host}: {err.strerror or err}"
    return None


def _hf_home() -> Path:
    return Path(os.environ.get("HF_HOME", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"))


def dataset_cached(dataset_path: str) -> bool:
    """Whether ``dataset_path`` is a local folder or already in the datasets or Hub cache (then the
    harness can load it without the network)."""
    if Path(dataset_path).expanduser().is_dir():
        return True
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE", _hf_home() / "datasets"))
    hub_cache = Path(os.environ.get("HF_HUB_CACHE", os.environ.get("HUGGINGFACE_HUB_CACHE", _hf_home() / "hub")))
    return (datasets_cache / dataset_path.replace("/", "___")).is_dir() or (
        hub_cache / f"datasets--{dataset_path.replace('/', '--')}"
    ).is_dir()


def check_hub_data(trees: list[TaskTree], suite: str) -> None:
    """Without --offline-data, every task's dataset comes from the Hub or its cache: when some are
    not cached and the Hub cannot be reached, say so at once (instead of minutes of retries)."""
    uncached = [leaf for tree in trees for leaf in tree.leaves if not dataset_cached(leaf.dataset_path)]
    if not uncached:
        return
    why = hub_unreachable()
    if why is None:
        return
    first = uncached[0]
    others = f" (and {len(uncached) - 1} more task(s))" if len(uncached) > 1 else ""
    raise OfflineDataError(
        f"task {first.name} needs the dataset {first.dataset_path}{others} from the Hugging Face Hub, which cannot be "
        f"reached ({why}). Pass --offline-data DIR with a folder written by `ibnorm-llm prefetch --out DIR "
        f"--suite {suite}` on a connected machine (--offline-data builtin is a small copy for smoke runs)"
    )
