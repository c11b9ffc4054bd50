"""Compare leaderboard results of several runs: a pure function of the saved ``summary.json`` files.

``ibnorm-llm eval`` writes one result directory per evaluated checkpoint, each holding a
``summary.json`` (read by :mod:`.summaries`). :mod:`.build` groups runs that differ only in their
seed and compares every run with the baseline norm of its preset (t-tests in :mod:`ibnorm_llm.stats`);
the result (:mod:`.table`, plain data) is rendered as Markdown and CSV by :mod:`.render` and as
PNG plots by :mod:`.plots`::

    summaries = load_summaries(["runs/eval/rms_s0", "runs/eval/ibn_l4_s0", ...])
    comparison = build_comparison(summaries)          # baseline: rmsnorm (llama), layernorm (gpt2)
    Path("comparison.md").write_text(to_markdown(comparison))

Nothing here runs a model or imports lm_eval.
"""

from ibnorm_llm.evaluation.comparison.build import build_comparison, default_baseline_norm, write_comparison
from ibnorm_llm.evaluation.comparison.render import MISSING, to_csv, to_markdown
from ibnorm_llm.evaluation.comparison.summaries import (
    ResultError,
    RunSummary,
    load_summaries,
    load_summary,
    parse_summary,
)
from ibnorm_llm.evaluation.comparison.table import Cell, Column, Comparison, Delta, Row

__all__ = [
    "MISSING", "Cell", "Column", "Comparison", "Delta", "ResultError", "Row", "RunSummary", "build_comparison",
    "default_baseline_norm", "load_summaries", "load_summary", "parse_summary", "to_csv", "to_markdown",
    "write_comparison",
]
