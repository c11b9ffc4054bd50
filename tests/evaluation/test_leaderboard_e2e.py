"""End to end: a tiny checkpoint of ours through both suites on the shipped offline data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ibnorm_llm.evaluation import run_leaderboard
from ibnorm_llm.evaluation.comparison import parse_summary
from ibnorm_llm.evaluation.harness.suites import suite_tasks
from ibnorm_llm.norms.ibnorm import DEFAULT_DEVIATION, DEFAULT_LAM_ROLE

OFFLINE = Path(__file__).resolve().parents[2] / "eval" / "offline_data"
VOCAB = 512


@pytest.mark.slow
def test_both_suites_offline_smoke(tiny_checkpoint, tmp_path, restore_globals):
    out = tmp_path / "eval"
    summary = run_leaderboard(tiny_checkpoint, "all", out, limit=2, batch_size=4, offline_data=OFFLINE, smoke=True)

    assert json.loads((out / "summary.json").read_text()) == summary
    raw = json.loads((out / "results.json").read_text())
    specs = suite_tasks("all")
    assert list(summary["tasks"]) == [s.name for s in specs]
    for spec in specs:
        score = summary["tasks"][spec.name]
        assert score["metric"] == spec.metric and score["num_fewshot"] == spec.num_fewshot
        assert 0.0 <= score["value"] <= 1.0 and score["n"] >= 1
        assert raw["results"][spec.name][spec.result_key] == score["value"]  # the summary restates the raw JSON
    assert raw["configs"]["arc_challenge"]["num_fewshot"] == 25
    assert raw["configs"]["gsm8k"]["generation_kwargs"]["max_gen_toks"] == 32
    assert raw["lm_eval_version"] == summary["harness_version"] == "0.4.13"
    assert (out / "samples" / "leaderboard_ifeval.jsonl").is_file() and (out / "samples" / "mmlu_nutrition.jsonl").is_file()

    # Groups are scored over the subtasks present, and say so.
    assert set(summary["partial_groups"]) == {"mmlu", "leaderboard_bbh", "leaderboard_math_hard"}
    assert "mmlu_anatomy" in summary["partial_groups"]["mmlu"]["missing"]
    assert summary["tasks"]["mmlu"]["n"] == 4 * 2  # 4 subjects x limit 2
    assert set(summary["subtasks"]["leaderboard_musr"]) == {
        "leaderboard_musr_murder_mysteries", "leaderboard_musr_object_placements", "leaderboard_musr_team_allocation"}

    # IBNorm's reading is part of the run's identity: runs of two readings are never averaged as seeds.
    assert summary["run"] == {"run_name": "tiny_ibnorm_l", "preset": "llama-tiny", "norm": "ibnorm", "variant": "L",
                              "lam": 4.0, "seed": 3,
                              "norm_options": {"deviation": DEFAULT_DEVIATION, "lam_role": DEFAULT_LAM_ROLE}}
    assert (summary["step"], summary["tokens"]) == (7, 1792)
    assert summary["offline_data"] is True and summary["smoke"] is True and summary["limit"] == 2
    assert summary["nltk_punkt_tab"]["kind"] in ("trained", "installed")
    # An untrained model predicts close to uniformly: held-out loss near ln(vocab).
    ppl = summary["perplexity"]
    assert ppl["tokens"] > 0 and abs(ppl["loss"] - math.log(VOCAB)) < 1.0
    assert parse_summary(summary, "e2e").held_out.ppl == pytest.approx(ppl["ppl"])  # the comparison tables read it
