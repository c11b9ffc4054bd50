"""One run's monitor statistics and spike events, read back from its metrics.jsonl.

A monitor key is ``monitor/<family>/<where>/<statistic>`` (docs/monitoring.md#names); ``<where>`` may
itself contain dots (a module name) but never a slash.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ibnorm_llm.health.errors import HealthError

FAMILIES = ("norm", "block", "param", "output")

_BLOCK_INDEX = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)\.")
_NORM_ROLE = re.compile(r"^(?:model\.layers|transformer\.h)\.\d+\.")


@dataclass(frozen=True)
class SpikeEvent:
    step: int
    kind: str
    value: float
    mean: float
    std: float
    layers: str
    skipped: bool


@dataclass
class RunHealth:
    label: str
    run_dir: Path
    series: dict[tuple[str, str, str], list[tuple[int, float]]] = field(default_factory=dict)
    """(family, where, statistic) -> (step, value) of every monitor step that logged it, in step order."""
    spikes: list[SpikeEvent] = field(default_factory=list)
    skipped_steps: int = 0
    """The run's last recorded spike_skipped_steps (train.skip_spikes)."""

    @property
    def steps(self) -> list[int]:
        return sorted({step for points in self.series.values() for step, _ in points})

    def statistics(self, family: str) -> list[str]:
        return sorted({stat for fam, _, stat in self.series if fam == family})

    def places(self, family: str, statistic: str | None = None) -> list[str]:
        """The family's ``<where>`` names in depth order (see :func:`depth_key`)."""
        names = {where for fam, where, stat in self.series if fam == family and statistic in (None, stat)}
        return sorted(names, key=depth_key)

    def values(self, family: str, where: str, statistic: str) -> list[tuple[int, float]]:
        return self.series.get((family, where, statistic), [])


def block_index(where: str) -> int | None:
    """The block a ``<where>`` belongs to: a norm module inside block i, block ``i``, parameter group ``block_i``."""
    if where.isdigit():
        return int(where)
    if where.startswith("block_") and where[6:].isdigit():
        return int(where[6:])
    match = _BLOCK_INDEX.search(where)
    return int(match.group(1)) if match else None


def norm_role(where: str) -> str:
    """A block norm's name without its block prefix (``input_layernorm``, ``self_attn.q_norm``, ``ln_1``);
    a norm outside the blocks keeps its name (``model.norm``)."""
    return _NORM_ROLE.sub("", where)


def depth_key(where: str) -> tuple:
    """Sort order by depth: the embeddings first, then block by block, then what follows the blocks."""
    index = block_index(where)
    if where == "embed":
        return (-1, "", where)
    if index is None:
        return (math.inf, "", where)
    return (index, norm_role(where), where)


def short_name(where: str) -> str:
    """``model.layers.3.input_layernorm`` -> ``3.input_layernorm``; others unchanged."""
    index = block_index(where)
    return f"{index}.{norm_role(where)}" if index is not None and not where.isdigit() and not where.startswith("block_") else where


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_run(run_dir: str | Path, label: str | None = None) -> RunHealth:
    """The monitor statistics and spike events of the run in ``run_dir`` (a runs/<name> folder)."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise HealthError(f"{run_dir}: no metrics.jsonl; give a run folder (runs/<name>) that ibnorm-llm train wrote")
    run = RunHealth(label or run_dir.name, run_dir)
    for number, line in enumerate(metrics.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise HealthError(f"{metrics}:{number}: not a JSON record ({err.msg}); the file is damaged") from err
        step = record.get("step")
        if not isinstance(step, int):
            continue
        for key, value in record.items():
            parts = key.split("/")
            if parts[0] == "monitor" and len(parts) == 4 and _is_number(value):
                run.series.setdefault((parts[1], parts[2], parts[3]), []).append((step, float(value)))
            elif parts[0] == "monitor" and len(parts) == 3 and parts[1] == "output" and _is_number(value):
                run.series.setdefault(("output", "", parts[2]), []).append((step, float(value)))
        if "spike/kind" in record:
            run.spikes.append(SpikeEvent(step, str(record["spike/kind"]), float(record.get("spike/value", math.nan)),
                                         float(record.get("spike/mean", math.nan)), float(record.get("spike/std", math.nan)),
                                         str(record.get("spike/layers", "")), bool(record.get("spike/skipped", False))))
        if isinstance(record.get("spike_skipped_steps"), int):
            run.skipped_steps = record["spike_skipped_steps"]
    if not run.series:
        raise HealthError(f"{metrics}: no monitor statistics; train with monitor.every > 0 (e.g. ibnorm-llm train --config ... monitor.every=50) "
                          "to record them (docs/monitoring.md)")
    for points in run.series.values():
        points.sort()
    return run
