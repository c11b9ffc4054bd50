"""Does a ranking depend on the condition? The two-way table and the interaction of a factorial study.

Rows are the first factor's levels (the things ranked, e.g. norms), columns the combinations of the
other factors' levels (the conditions, e.g. optimizers); the first column is the reference. For a row
``r`` and a column ``c`` the gap is ``loss(r, c) - loss(baseline, c)`` per seed; the interaction is how
the gap moves from the reference column to ``c``:

    interaction(r, c) = [loss(r, c) - loss(base, c)] - [loss(r, ref) - loss(base, ref)]

computed per seed (seed s of every cell shares the data order and initialization seed) and tested
with ibnorm_llm.stats.seed_test: a paired t-test over the seeds, i.e. a one-sample test of the per-seed
interaction contrasts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ibnorm_llm.stats import SIGNIFICANCE, SeedTest, Spread, seed_test, spread
from ibnorm_llm.study.factorial import Factorial


@dataclass(frozen=True)
class Layout:
    """Which arm sits in which cell of the two-way table."""

    row_factor: str
    column_factors: tuple[str, ...]
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: dict[tuple[str, str], str]
    """(row, column) -> arm."""

    @property
    def reference(self) -> str:
        return self.columns[0]


def layout(factorial: Factorial) -> Layout:
    row_factor, *others = factorial.factors
    cells = {}
    for arm, levels in factorial.levels.items():
        cells[(levels[0], "_".join(levels[1:]))] = arm
    columns = tuple(dict.fromkeys(column for _, column in cells))
    return Layout(row_factor, tuple(others), factorial.factors[row_factor], columns, cells)


@dataclass(frozen=True)
class Gap:
    row: str
    column: str
    versus_baseline: SeedTest | None
    """loss(row, column) - loss(baseline, column) over seeds (ibnorm_llm.stats.seed_test); None when a side has no values."""
    interaction: SeedTest | None
    """This gap minus the same row's gap in the reference column, over seeds; None in the reference column
    itself or when a side has no values."""


def _gaps(row: Mapping[int, float], base: Mapping[int, float]) -> dict[int, float]:
    return {seed: row[seed] - base[seed] for seed in sorted(set(row) & set(base))}


def _tested(arm: Mapping[int, float], against: Mapping[int, float]) -> SeedTest | None:
    return seed_test(arm, against) if arm and against else None


def interactions(per_seed: Mapping[str, Mapping[int, float]], grid: Layout, baseline: str) -> list[Gap]:
    """Every non-baseline row's gap to ``baseline`` in every column and its interaction with the reference.

    ``per_seed``: arm -> seed -> the measured value (test loss); arms without values are left out.
    """
    result = []
    for row in grid.rows:
        if row == baseline:
            continue
        reference_gaps = _gaps(per_seed.get(grid.cells[(row, grid.reference)], {}),
                               per_seed.get(grid.cells[(baseline, grid.reference)], {}))
        for column in grid.columns:
            arm, base = per_seed.get(grid.cells[(row, column)], {}), per_seed.get(grid.cells[(baseline, column)], {})
            gaps = _gaps(arm, base)
            moved = None if column == grid.reference else _tested(gaps, reference_gaps)
            result.append(Gap(row, column, _tested(arm, base), moved))
    return result


def means(per_seed: Mapping[str, Mapping[int, float]], grid: Layout) -> dict[tuple[str, str], Spread]:
    """(row, column) -> mean ± sd over seeds, for the cells with values."""
    return {cell: spread(list(per_seed[arm].values())) for cell, arm in grid.cells.items() if per_seed.get(arm)}


def rankings(cell_means: Mapping[tuple[str, str], Spread], grid: Layout) -> dict[str, tuple[str, ...]]:
    """Column -> its rows from the lowest mean to the highest (rows without a value left out)."""
    return {column: tuple(sorted((r for r in grid.rows if (r, column) in cell_means),
                                 key=lambda r: cell_means[(r, column)].mean))
            for column in grid.columns}


def ranking_sentence(order: Mapping[str, tuple[str, ...]], gaps: list[Gap], grid: Layout) -> str:
    """Whether the ranking changes across the columns, and how many gap changes behind it are significant."""
    conditions = " × ".join(grid.column_factors)
    shown = {column: " < ".join(rows) for column, rows in order.items()}
    tested = [g.interaction for g in gaps if g.interaction is not None]
    significant = sum(1 for t in tested if t.p is not None and t.p < SIGNIFICANCE)
    evidence = (f"{significant} of the {len(tested)} gap changes (interactions) are significant at {SIGNIFICANCE} "
                "(paired t-test over seeds)")
    if len(set(order.values())) == 1:
        return (f"The ranking of {grid.row_factor} is the same under every {conditions} "
                f"({shown[grid.reference]}, lowest test loss first); {evidence}.")
    per_column = "; ".join(f"under {column}: {rows}" for column, rows in shown.items())
    caution = "" if significant else "; with none significant, the reordering is within seed noise"
    return (f"The ranking of {grid.row_factor} changes with {conditions} ({per_column}; lowest test loss first); "
            f"{evidence}{caution}.")
