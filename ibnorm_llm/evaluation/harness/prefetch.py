"""Download the leaderboard datasets on a connected machine into the offline layout.

For every leaf task of the requested suites, the dataset named in the harness's YAML
(``dataset_path``, ``dataset_name``) is loaded with ``datasets.load_dataset`` and each split
the YAML names is written to ``OUT/<leaf task>/<split>.jsonl`` (see
:mod:`ibnorm_llm.evaluation.harness.offline`); NLTK's ``punkt_tab`` goes to ``OUT/nltk_data``. Copy OUT
to the air-gapped machine and pass it as ``--offline-data``.

GPQA is gated on the Hub: accept its terms and log in (``huggingface-cli login``) first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ibnorm_llm.evaluation.harness.offline import NLTK_SUBDIR, split_file
from ibnorm_llm.evaluation.harness.suites import select_tasks
from ibnorm_llm.evaluation.harness.tasks import HarnessTask, resolve_task


class PrefetchError(RuntimeError):
    """Some task data could not be downloaded (the rest was written); the message lists what and why."""


def _write_jsonl(path: Path, rows: Any) -> int:
    """Write rows atomically (temp file, then rename), so an interrupted fetch leaves no partial split."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            count += 1
    os.replace(tmp, path)
    return count


def _dataset_kwargs(task: HarnessTask) -> dict[str, Any]:
    kwargs = dict(task.config.get("dataset_kwargs") or {})
    kwargs.pop("trust_remote_code", None)  # datasets >= 4 has no loading scripts
    return kwargs


def prefetch(
    out_dir: str | Path,
    suite: str = "all",
    tasks: list[str] | None = None,
    *,
    load_dataset: Callable[..., Any] | None = None,
    nltk_download: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Fetch every split of every leaf task; returns a manifest (also written to OUT/manifest.json).

    ``load_dataset`` and ``nltk_download`` default to ``datasets.load_dataset`` and
    ``nltk.download`` (tests pass stand-ins). Datasets that fail to load are listed in the
    manifest's ``failed`` and raised together at the end, after everything else was written.
    """
    if load_dataset is None:
        from datasets import load_dataset
    if nltk_download is None:
        from nltk import download as nltk_download

    out_dir = Path(out_dir)
    cache: dict[tuple[str, str | None], Any] = {}
    written: dict[str, dict[str, int]] = {}
    failed: dict[str, str] = {}
    for spec in select_tasks(suite, tasks):
        for leaf in resolve_task(spec).leaves:
            key = (leaf.dataset_path, leaf.dataset_name)
            if key not in cache:
                try:
                    cache[key] = load_dataset(leaf.dataset_path, leaf.dataset_name, **_dataset_kwargs(leaf))
                except Exception as err:  # noqa: BLE001 - one gated or moved dataset must not stop the rest
                    cache[key] = err
            dataset = cache[key]
            if isinstance(dataset, Exception):
                failed[leaf.name] = f"{leaf.dataset_path} ({leaf.dataset_name}): {type(dataset).__name__}: {dataset}"
                continue
            missing = [s for s in leaf.splits if s not in dataset]
            if missing:
                failed[leaf.name] = f"{leaf.dataset_path} ({leaf.dataset_name}) has no split(s) {', '.join(missing)}"
                continue
            written[leaf.name] = {
                split: _write_jsonl(split_file(out_dir, leaf.name, split), dataset[split]) for split in leaf.splits
            }

    nltk_dir = out_dir / NLTK_SUBDIR
    nltk_dir.mkdir(parents=True, exist_ok=True)
    if not nltk_download("punkt_tab", download_dir=str(nltk_dir)):
        failed["nltk punkt_tab"] = f"nltk.download('punkt_tab', download_dir={str(nltk_dir)!r}) failed"
    manifest = {"suite": suite, "tasks": written, "failed": failed}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if failed:
        raise PrefetchError(
            f"prefetch into {out_dir}: {len(failed)} item(s) failed (the rest were written):\n  "
            + "\n  ".join(f"{k}: {v}" for k, v in failed.items())
            + "\nGPQA is gated: accept its terms on the Hub and run `huggingface-cli login`, then re-run."
        )
    return manifest
