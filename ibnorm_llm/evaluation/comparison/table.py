"""What :func:`~ibnorm_llm.evaluation.comparison.build.build_comparison` returns: columns, rows of seed-aggregated
cells, deltas against the baseline, and the best rows per column. Plain data, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Column:
    key: str
    """A task name, '<task>_bpb', '<suite>_avg', 'loss', 'bpb' or 'ppl'."""
    title: str
    higher_is_better: bool
    percent: bool
    """Task scores and suite averages are shown in percent."""
    chance: float | None = None
    """A task score's chance level in the column's units (percent); scores at or below it are marked."""

    @property
    def decimals(self) -> int:
        """Display precision; ties at this precision count as equally best."""
        return 4 if self.key in ("loss", "bpb") or self.key.endswith("_bpb") else 2


@dataclass(frozen=True)
class Cell:
    """One column of one row: a value per seed and their summary."""

    by_seed: Mapping[int, float]
    stderr: float | None = None
    """The harness's standard error (mean over seeds), task columns only."""

    @property
    def n(self) -> int:
        return len(self.by_seed)

    @property
    def mean(self) -> float | None:
        return float(np.mean(list(self.by_seed.values()))) if self.by_seed else None

    @property
    def sd(self) -> float | None:
        """Sample standard deviation over seeds (ddof=1); None with fewer than 2 seeds."""
        return float(np.std(list(self.by_seed.values()), ddof=1)) if self.n >= 2 else None


@dataclass(frozen=True)
class Delta:
    """A row against its baseline in one column."""

    pct: float | None
    """100 * (mean - baseline mean) / baseline mean; None when the baseline mean is 0 or a side is missing."""
    diff: float | None
    """mean - baseline mean, in the column's units (percentage points for scores)."""
    p_value: float | None
    test: str | None
    """'paired' (scipy.stats.ttest_rel over matched seeds), 'welch' (ttest_ind, equal_var=False) or None."""


@dataclass(frozen=True)
class Row:
    """Runs that differ only in their seed, aggregated."""

    preset: str | None
    norm: str | None
    variant: str | None
    lam: float | None
    step: int | None
    tokens: int | None
    extras: tuple[tuple[str, str], ...]
    """Other run fields (JSON-encoded values) that runs of this row share."""
    seeds: tuple[int | None, ...]
    run_names: tuple[str, ...]
    sources: tuple[str, ...]
    cells: Mapping[str, Cell]
    missing: Mapping[str, tuple[str, ...]]
    """Suite -> its tasks absent from at least one seed of this row."""
    is_baseline: bool
    baseline_index: int | None
    """Index (in ``Comparison.rows``) of the row this one is compared with; None for baselines and rows without one."""
    deltas: Mapping[str, Delta]

    @property
    def label(self) -> str:
        parts = [self.preset or "(no run config)"] + ([self.norm] if self.norm is not None else [])
        if self.variant is not None:
            parts.append(self.variant)
        if self.lam is not None:
            parts.append(f"λ={self.lam:g}")
        if self.step is not None:
            parts.append(f"step {self.step}")
        parts += [f"{k}={v}" for k, v in self.extras]
        return " ".join(parts)

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)


@dataclass(frozen=True)
class Comparison:
    suite: str
    harness_versions: tuple[str, ...]
    limit: int | None
    offline_data: bool
    columns: tuple[Column, ...]
    metric_by_task: Mapping[str, str]
    rows: tuple[Row, ...]
    baseline_norms: Mapping[str | None, str | None]
    """Preset -> the baseline norm its rows are compared with (None: no default and none given)."""
    varying_extras: tuple[str, ...]
    """Extra run fields whose values differ between rows (shown as columns)."""
    best: Mapping[str, frozenset[int]]
    """Column key -> indices of the rows with the best mean."""
    best_delta: Mapping[str, frozenset[int]]
    """Column key -> indices of the non-baseline rows with the best relative change."""
    notes: tuple[str, ...]

    def row(self, label: str) -> Row:
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(f"no row {label!r}; rows: {[r.label for r in self.rows]}")
