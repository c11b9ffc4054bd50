"""The factorial part of a study's report: the two-way table, the interaction table and its sentence,
and interaction.csv (one row per gap)."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from ibnorm_llm.stats import SeedTest, Spread
from ibnorm_llm.study.factorial import Factorial
from ibnorm_llm.study.interaction import Gap, Layout, interactions, layout, means, ranking_sentence, rankings

PerSeed = Mapping[str, Mapping[int, float]]
"""arm -> seed -> test value."""


def _cell(loss: Spread | None, bpb: Spread | None) -> str:
    if loss is None:
        return "-"
    sd = f" ± {loss.sd:.4f}" if loss.sd is not None else ""
    text = f"{loss.mean:.4f}{sd} (n={loss.n})"
    return text + (f"; bpb {bpb.mean:.4f}" + (f" ± {bpb.sd:.4f}" if bpb.sd is not None else "") if bpb else "")


def _test(test: SeedTest | None) -> str:
    if test is None:
        return "-"
    sd = f" ± {test.sd_difference:.4f}" if test.sd_difference is not None else ""
    p = f", p={test.p:.3g}" if test.p is not None else ""
    return f"{test.mean_difference:+.4f}{sd} (n={test.n}{p})"


def _two_way(grid: Layout, loss: PerSeed, bpb: PerSeed) -> list[str]:
    loss_means, bpb_means = means(loss, grid), means(bpb, grid)
    lines = [f"| {grid.row_factor} \\ {' × '.join(grid.column_factors)} | " + " | ".join(grid.columns) + " |",
             "|---|" + "---|" * len(grid.columns)]
    for row in grid.rows:
        cells = [_cell(loss_means.get((row, c)), bpb_means.get((row, c))) for c in grid.columns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def _interaction_table(grid: Layout, gaps: list[Gap], baseline: str) -> list[str]:
    lines = [f"| {grid.row_factor} | " + " | ".join(f"Δ vs {baseline} under {c}" for c in grid.columns)
             + " | " + " | ".join(f"interaction {c} − {grid.reference}" for c in grid.columns[1:]) + " |",
             "|---|" + "---|" * (2 * len(grid.columns) - 1)]
    for row in dict.fromkeys(g.row for g in gaps):
        mine = {g.column: g for g in gaps if g.row == row}
        lines.append(f"| {row} | " + " | ".join(_test(mine[c].versus_baseline) for c in grid.columns) + " | "
                     + " | ".join(_test(mine[c].interaction) for c in grid.columns[1:]) + " |")
    return lines


def write_factorial(factorial: Factorial, baseline: str, loss: PerSeed, bpb: PerSeed, csv_path: Path) -> list[str]:
    """The report's markdown (the two-way table on the test split, the gaps to ``baseline`` and their
    interaction, the ranking sentence), with one row per gap written to ``csv_path``."""
    grid = layout(factorial)
    gaps = interactions(loss, grid, baseline)
    _write_csv(grid, gaps, csv_path)
    order = rankings(means(loss, grid), grid)
    return [
        f"## {grid.row_factor} × {' × '.join(grid.column_factors)} (test split, chosen settings per cell)", "",
        ranking_sentence(order, gaps, grid), "",
        *_two_way(grid, loss, bpb), "",
        "Cells: test loss mean ± sd over seeds (n) and bits per byte; each cell tuned on its own grid.", "",
        *_interaction_table(grid, gaps, baseline), "",
        f"Δ: the row minus {baseline} in the same column, per seed (negative = better than {baseline}); "
        f"interaction: that Δ minus the row's Δ under {grid.reference}, per seed, with a paired t-test over the "
        "seeds (a nonzero interaction means the gap depends on the condition).", "",
    ]


def _write_csv(grid: Layout, gaps: list[Gap], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([grid.row_factor, "condition", "reference", "n", "diff_vs_baseline", "diff_sd", "diff_p",
                         "interaction", "interaction_sd", "interaction_p"])
        for gap in gaps:
            row = [gap.row, gap.column, grid.reference]
            versus, moved = gap.versus_baseline, gap.interaction
            row += [versus.n, versus.mean_difference, _blank(versus.sd_difference), _blank(versus.p)] if versus \
                else [0, "", "", ""]
            row += [moved.mean_difference, _blank(moved.sd_difference), _blank(moved.p)] if moved else ["", "", ""]
            writer.writerow(row)


def _blank(value: float | None) -> float | str:
    return "" if value is None else value
