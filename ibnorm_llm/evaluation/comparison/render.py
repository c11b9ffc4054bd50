"""Markdown and CSV renderings of a :class:`~ibnorm_llm.evaluation.comparison.table.Comparison`.

Missing values are written as ``MISSING`` (an em dash) in both, never as 0.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from ibnorm_llm.evaluation.comparison.summaries import TRAINING, suite_parts_of
from ibnorm_llm.evaluation.comparison.table import Column, Comparison, Delta, Row
from ibnorm_llm.stats import MIN_SEEDS_FOR_TEST

MISSING = "—"


def _num(value: float | None, col: Column) -> str:
    return MISSING if value is None else f"{value:.{col.decimals}f}"


def _p_text(p_value: float | None) -> str:
    if p_value is None:
        return f"p={MISSING}"
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"


def _seeds_text(row: Row) -> str:
    return "1 (single-seed)" if row.n_seeds == 1 else str(row.n_seeds)


def _test_text(comparison: Comparison, row: Row) -> str:
    if row.is_baseline:
        return "baseline"
    if row.baseline_index is None:
        return MISSING
    base = comparison.rows[row.baseline_index]
    if row.n_seeds < MIN_SEEDS_FOR_TEST or base.n_seeds < MIN_SEEDS_FOR_TEST:
        return f"none (needs ≥{MIN_SEEDS_FOR_TEST} seeds per side)"
    if set(row.seeds) == set(base.seeds):
        return "paired t over seeds " + ",".join(str(s) for s in sorted(row.seeds))
    return "Welch t (seeds differ)"


def _score_cell(row: Row, col: Column) -> str:
    cell = row.cells[col.key]
    if cell.mean is None:
        missing = row.missing.get(col.key[: -len("_avg")]) if col.key.endswith("_avg") else None
        return f"{MISSING} (missing: {', '.join(missing)})" if missing else MISSING
    text = _num(cell.mean, col)
    if cell.n >= 2:
        text = f"{text} ± {_num(cell.sd, col)} sd"
    elif cell.stderr is not None:
        text = f"{text} ± {_num(cell.stderr, col)} se"
    if col.chance is not None and cell.mean <= col.chance:
        text += " (≤ chance)"
    return text


def _delta_cell(row: Row, col: Column) -> str:
    delta = row.deltas.get(col.key)
    if delta is None or delta.pct is None:
        return MISSING
    text = f"{delta.pct:+.2f}"
    if delta.test is not None:
        text += f" ({_p_text(delta.p_value)})"
    return text


def _baseline_label(comparison: Comparison, row: Row) -> str:
    return MISSING if row.baseline_index is None else comparison.rows[row.baseline_index].label


def _bold(text: str, marked: bool) -> str:
    return f"**{text}**" if marked and text != MISSING else text


def _identity_cells(comparison: Comparison, row: Row) -> list[str]:
    extras = dict(row.extras)
    return [
        row.preset or MISSING,
        row.norm or MISSING,
        row.variant or MISSING,
        MISSING if row.lam is None else f"{row.lam:g}",
        MISSING if row.step is None else str(row.step),
        MISSING if row.tokens is None else str(row.tokens),
        *(extras.get(k, MISSING) for k in comparison.varying_extras),
    ]


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def to_markdown(comparison: Comparison, title: str = "Norm comparison") -> str:
    """The comparison as Markdown: settings, a score table, a relative-change table, notes and sources."""
    c = comparison
    identity = ["preset", "norm", "variant", "λ", "step", "tokens", *c.varying_extras]
    baselines = ", ".join(f"{p}: {k or MISSING}" for p, k in c.baseline_norms.items() if p is not None) or "none"
    lines = [
        f"# {title}",
        "",
        (f"Training runs · the held-out and test-split numbers of each run's last evaluated metrics record · "
         f"baseline norm per preset: {baselines}") if c.suite == TRAINING else
        (f"Suite {c.suite} · lm-eval {', '.join(c.harness_versions)} · limit {c.limit if c.limit is not None else 'none'}"
         f" · task data {'offline copies' if c.offline_data else 'hub datasets'} · baseline norm per preset: {baselines}"),
        "",
        "Scores are the harness metric × 100. `a ± b sd`: mean and sample standard deviation over seeds; "
        "`a ± b se`: single-seed value and the harness's standard error. Suite averages are the mean of the "
        "suite's tasks, per seed. `(≤ chance)`: at or below the task's chance level (guessing among the "
        "choices), so it cannot rank models. bpb: bits per byte (of the correct continuation for a task, of "
        "the held-out text for held-out bpb), lower is better and comparable across tokenizers. Bold: best in "
        "its column among rows of the same step and tokens (higher is better for scores, lower for loss, bpb and "
        f"perplexity). {MISSING}: missing.",
        "",
        "## Scores",
        "",
    ]
    body = []
    for i, row in enumerate(c.rows):
        scores = [_bold(_score_cell(row, col), i in c.best[col.key]) for col in c.columns]
        body.append([*_identity_cells(c, row), _seeds_text(row), *scores])
    lines += _md_table([*identity, "seeds", *(col.title for col in c.columns)], body)
    lines += [
        "",
        "## Relative change against the baseline (%)",
        "",
        "Δ% = 100 · (run − baseline) / baseline on seed means, against the baseline norm of the same preset "
        f"and step. p: with ≥{MIN_SEEDS_FOR_TEST} seeds on both sides, a paired t-test (scipy.stats.ttest_rel) pairing seed s of "
        "the run with seed s of the baseline when both have the same seeds, otherwise Welch's t-test "
        "(unequal variances). For loss and perplexity a negative change is an improvement. Bold: best change "
        "in its column among rows of the same step and tokens.",
        "",
    ]
    body = []
    for i, row in enumerate(c.rows):
        deltas = [
            "baseline" if row.is_baseline else _bold(_delta_cell(row, col), i in c.best_delta[col.key])
            for col in c.columns
        ]
        body.append([*_identity_cells(c, row), _seeds_text(row), _test_text(c, row), *deltas])
    lines += _md_table([*identity, "seeds", "test", *(col.title for col in c.columns)], body)
    if c.notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in c.notes)]
    lines += ["", "## Sources", ""]
    lines += [f"- {row.label}: " + ", ".join(f"`{s}`" for s in row.sources) for row in c.rows]
    return "\n".join(lines) + "\n"


def _csv_num(value: float | None) -> str:
    return MISSING if value is None else f"{value:.6g}"


def to_csv(comparison: Comparison) -> str:
    """The comparison as CSV, one row per aggregated run.

    Per column ``C``: ``C`` (mean over seeds), ``C_sd`` (over seeds), ``C_stderr`` (harness, tasks
    only), ``C_delta_pct``, ``C_delta`` (absolute, in the column's units) and ``C_p``. ``best_in``
    lists the columns (``C`` or ``C_delta_pct``) in which the row is best, separated by ';'.
    Missing values are '—' (pandas: ``read_csv(..., na_values='—')``).
    """
    c = comparison
    header = ["preset", "norm", "variant", "lam", "step", "tokens", *c.varying_extras, "n_seeds", "seeds",
              "single_seed", "baseline", "test"]
    for col in c.columns:
        header += [col.key, f"{col.key}_sd"] + ([f"{col.key}_stderr"] if col.key in c.metric_by_task else [])
        header += [f"{col.key}_delta_pct", f"{col.key}_delta", f"{col.key}_p"]
    header += [f"{s}_avg_missing" for s in suite_parts_of(c.suite)] + ["best_in", "run_names", "result_files"]

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for i, row in enumerate(c.rows):
        extras = dict(row.extras)
        seeds = ";".join(MISSING if seed is None else str(seed) for seed in row.seeds)
        values = [
            row.preset or MISSING, row.norm or MISSING, row.variant or MISSING, MISSING if row.lam is None else f"{row.lam:g}",
            MISSING if row.step is None else row.step, MISSING if row.tokens is None else row.tokens,
            *(extras.get(k, MISSING) for k in c.varying_extras),
            row.n_seeds, seeds, row.n_seeds == 1,
            "self" if row.is_baseline else _baseline_label(c, row), _test_text(c, row),
        ]
        best_in = []
        for col in c.columns:
            cell = row.cells[col.key]
            delta = row.deltas.get(col.key, Delta(None, None, None, None))
            values += [_csv_num(cell.mean), _csv_num(cell.sd)]
            if col.key in c.metric_by_task:
                values.append(_csv_num(cell.stderr))
            values += [_csv_num(delta.pct), _csv_num(delta.diff), _csv_num(delta.p_value)]
            if i in c.best[col.key]:
                best_in.append(col.key)
            if i in c.best_delta[col.key]:
                best_in.append(f"{col.key}_delta_pct")
        values += [";".join(row.missing.get(s, ())) or MISSING for s in suite_parts_of(c.suite)]
        values += [";".join(best_in) or MISSING, ";".join(row.run_names), ";".join(row.sources)]
        writer.writerow(values)
    return buffer.getvalue()
