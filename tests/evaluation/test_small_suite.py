"""The small-model suite: its offline smoke items, and a tiny checkpoint through it end to end offline,
with acc, acc_norm, chance levels and per-task bits per byte of the correct continuation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ibnorm_llm.evaluation import run_leaderboard
from ibnorm_llm.evaluation.comparison import write_comparison
from ibnorm_llm.evaluation.harness.offline import check_offline_data, split_file
from ibnorm_llm.evaluation.harness.suites import suite_tasks, task_names
from ibnorm_llm.evaluation.harness.tasks import resolve_task

OFFLINE = Path(__file__).resolve().parents[2] / "eval" / "offline_data"
SCHEMA = {  # the fields of each dataset's real Hugging Face rows
    "arc_easy": {"id", "question", "choices", "answerKey"},
    "arc_challenge": {"id", "question", "choices", "answerKey"},
    "piqa": {"goal", "sol1", "sol2", "label"},
    "sciq": {"question", "distractor1", "distractor2", "distractor3", "correct_answer", "support"},
    "lambada_openai": {"text"},
    "hellaswag": {"ind", "activity_label", "ctx_a", "ctx_b", "ctx", "endings", "label"},
    "winogrande": {"sentence", "option1", "option2", "answer"},
}


def rows(task: str, split: str) -> list[dict]:
    return [json.loads(line) for line in split_file(OFFLINE, task, split).read_text().splitlines()]


def test_small_suite_is_zero_shot_cloze_with_chance_levels():
    assert task_names("small") == tuple(SCHEMA)
    for spec in suite_tasks("small"):
        assert spec.num_fewshot == 0 and spec.continuation_bpb and spec.chance is not None
    assert "small" not in [s for s in ("v1", "v2")]  # `all` stays the two leaderboards
    assert not set(task_names("all")) & {"arc_easy", "piqa", "sciq", "lambada_openai"}


def test_offline_items_cover_every_split_in_the_real_schema():
    trees = [resolve_task(spec) for spec in suite_tasks("small")]
    coverage = check_offline_data(trees, OFFLINE)
    for tree in trees:
        (leaf,) = tree.leaves
        assert coverage[tree.spec.name].included == (leaf.name,)
        for split in leaf.splits:
            data = rows(leaf.name, split)
            assert data and all(SCHEMA[leaf.name] <= set(r) for r in data), f"{leaf.name}/{split}"
    assert all(r["label"] in (0, 1) for r in rows("piqa", "validation"))
    assert all(r["answerKey"] in r["choices"]["label"] for r in rows("arc_easy", "test"))
    assert all(len(r["text"].split()) > 10 for r in rows("lambada_openai", "test"))


def expected_bpb(samples: list[dict], gold) -> float:
    nats = -sum(s["filtered_resps"][gold(s)][0] for s in samples)
    n_bytes = sum(len(s["arguments"][gold(s)][1].encode("utf-8")) for s in samples)
    return nats / (math.log(2) * n_bytes)


@pytest.mark.slow
def test_small_suite_end_to_end_offline(tiny_checkpoint, tmp_path, restore_globals):
    out = tmp_path / "small"
    summary = run_leaderboard(tiny_checkpoint, "small", out, batch_size=4, offline_data=OFFLINE, smoke=True)
    assert list(summary["tasks"]) == list(SCHEMA)
    for spec in suite_tasks("small"):
        score = summary["tasks"][spec.name]
        assert score["metric"] == spec.metric and score["chance"] == spec.chance and score["num_fewshot"] == 0
        assert 0.0 <= score["acc"] <= 1.0 and score["bpb"] > 0 and math.isfinite(score["bpb"])
        # acc_norm where the harness defines it: lambada scores one last word, winogrande's choices share
        # one continuation, so length normalization changes nothing there.
        assert ("acc_norm" in score) == (spec.name not in ("lambada_openai", "winogrande"))
        assert score["n"] == len(rows(spec.name, resolve_task(spec).leaves[0].config.get("test_split")
                                      or resolve_task(spec).leaves[0].config["validation_split"]))
    samples = {t: [json.loads(line) for line in (out / "samples" / f"{t}.jsonl").read_text().splitlines()]
               for t in SCHEMA}
    # The per-task bpb is the harness's own log-likelihood of the correct continuation over its bytes.
    assert summary["tasks"]["arc_easy"]["bpb"] == pytest.approx(expected_bpb(samples["arc_easy"], lambda s: s["target"]))
    assert summary["tasks"]["lambada_openai"]["bpb"] == pytest.approx(expected_bpb(samples["lambada_openai"],
                                                                                   lambda s: 0))
    winogrande_gold = {"1": 0, "2": 1}
    assert summary["tasks"]["winogrande"]["bpb"] == pytest.approx(
        expected_bpb(samples["winogrande"], lambda s: winogrande_gold[s["doc"]["answer"]]))
    assert summary["perplexity"]["bpb"] > 0

    # The comparison table has the bpb columns and marks scores at or below chance.
    comparison = write_comparison([out], tmp_path / "cmp", title="small")
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "arc_easy bpb" in md and "held-out bpb" in md
    at_chance = [t for t, s in summary["tasks"].items() if s["value"] <= s["chance"]]
    assert md.count("(≤ chance)") >= len(at_chance) and comparison.rows


def test_prefetch_fetches_the_small_suite(tmp_path):
    from test_leaderboard_prefetch import FakeHub

    from ibnorm_llm.evaluation.harness.prefetch import prefetch

    hub = FakeHub()
    manifest = prefetch(tmp_path, "small", None, load_dataset=hub.load_dataset, nltk_download=hub.nltk_download)
    assert {path for path, _ in hub.calls} == {"allenai/ai2_arc", "baber/piqa", "allenai/sciq",
                                               "EleutherAI/lambada_openai", "Rowan/hellaswag", "allenai/winogrande"}
    assert set(manifest["tasks"]) == set(SCHEMA)
    trees = [resolve_task(spec) for spec in suite_tasks("small")]
    assert all(not cov.missing for cov in check_offline_data(trees, tmp_path).values())
