"""The shipped offline task data: coverage of both suites, real schemas, enough few-shot items."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from ibnorm_llm.evaluation.harness.offline import check_offline_data, coverage, split_file
from ibnorm_llm.evaluation.harness.punkt import train_punkt_tab
from ibnorm_llm.evaluation.harness.suites import suite_tasks
from ibnorm_llm.evaluation.harness.tasks import resolve_task

OFFLINE = Path(__file__).resolve().parents[2] / "eval" / "offline_data"
TREES = {spec.name: resolve_task(spec) for spec in suite_tasks("all")}

# Fields each dataset's rows carry in the real Hugging Face schema (the ones the harness reads, at least).
SCHEMA = {
    "arc_challenge": {"id", "question", "choices", "answerKey"},
    "hellaswag": {"ind", "activity_label", "ctx_a", "ctx_b", "ctx", "endings", "source_id", "split", "split_type", "label"},
    "mmlu": {"question", "subject", "choices", "answer"},
    "truthfulqa_mc2": {"question", "mc1_targets", "mc2_targets"},
    "winogrande": {"sentence", "option1", "option2", "answer"},
    "gsm8k": {"question", "answer"},
    "leaderboard_ifeval": {"key", "prompt", "instruction_id_list", "kwargs"},
    "leaderboard_bbh": {"input", "target"},
    "leaderboard_math_hard": {"problem", "level", "type", "solution"},
    "leaderboard_gpqa": {"Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"},
    "leaderboard_musr": {"narrative", "question", "choices", "answer_index", "answer_choice"},
    "leaderboard_mmlu_pro": {"question_id", "question", "options", "answer", "answer_index", "cot_content", "category", "src"},
}


def rows(task: str, split: str) -> list[dict]:
    return [json.loads(line) for line in split_file(OFFLINE, task, split).read_text().splitlines()]


def test_every_task_of_both_suites_has_data_and_missing_subtasks_are_listed():
    covered = check_offline_data(list(TREES.values()), OFFLINE, allow_partial_groups=True)
    assert set(covered) == set(TREES)
    for name, cov in covered.items():
        assert cov.included, f"{name} has no offline data"
        assert set(cov.included) | set(cov.missing) == {leaf.name for leaf in TREES[name].leaves}
    assert {name for name, cov in covered.items() if cov.partial} == {"mmlu", "leaderboard_bbh", "leaderboard_math_hard"}


def test_readme_lists_exactly_the_included_subtasks():
    readme = (OFFLINE / "README.md").read_text()
    for name in ("mmlu", "leaderboard_bbh", "leaderboard_math_hard", "leaderboard_gpqa", "leaderboard_musr"):
        line = re.search(rf"^- {name}: (.*)$", readme, re.M)
        assert line, f"README lists no subtasks for {name}"
        assert set(re.findall(r"`([^`]+)`", line.group(1))) == set(coverage(TREES[name], OFFLINE).included)


@pytest.mark.parametrize("name", list(TREES))
def test_rows_have_the_real_schema_and_fewshot_pools_are_large_enough(name):
    tree = TREES[name]
    for leaf in coverage(tree, OFFLINE).included:
        task = next(t for t in tree.leaves if t.name == leaf)
        for split in task.splits:
            data = rows(leaf, split)
            assert data, f"{leaf}/{split}.jsonl is empty"
            for row in data:
                assert SCHEMA[name] <= set(row), f"{leaf}/{split}: missing {SCHEMA[name] - set(row)}"
        fewshot_split = task.config.get("fewshot_split") or task.config.get("training_split")
        fixed_samples = "samples" in (task.config.get("fewshot_config") or {})
        if tree.spec.num_fewshot and not fixed_samples:
            assert len(rows(leaf, fewshot_split)) >= tree.spec.num_fewshot, f"{leaf}: too few {fewshot_split} items"


def test_answers_point_at_valid_choices():
    for row in rows("arc_challenge", "test"):
        assert row["answerKey"] in row["choices"]["label"]
    for row in rows("hellaswag", "validation"):
        assert 0 <= int(row["label"]) < len(row["endings"])
    for row in rows("winogrande", "validation"):
        assert row["answer"] in ("1", "2") and row["sentence"].count("_") == 1
    for row in rows("gsm8k", "test"):
        assert re.search(r"#### -?\d+$", row["answer"])
    for row in rows("leaderboard_mmlu_pro", "test"):
        assert row["answer"] == "ABCDEFGHIJ"[row["answer_index"]]
    for leaf in coverage(TREES["leaderboard_bbh"], OFFLINE).included:
        choices = next(t for t in TREES["leaderboard_bbh"].leaves if t.name == leaf).config["doc_to_choice"]
        assert all(row["target"] in choices for row in rows(leaf, "test")), leaf
    for leaf in coverage(TREES["leaderboard_musr"], OFFLINE).included:
        for row in rows(leaf, leaf.removeprefix("leaderboard_musr_")):
            assert ast.literal_eval(row["choices"])[row["answer_index"]] == row["answer_choice"]
    for leaf in coverage(TREES["leaderboard_math_hard"], OFFLINE).included:
        assert all(r["level"] == "Level 5" and "\\boxed{" in r["solution"] for r in rows(leaf, "test"))


@pytest.fixture
def punkt_on_path(tmp_path, monkeypatch):
    """ifeval's module downloads punkt_tab at import when NLTK finds none: put a trained one first."""
    import nltk

    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    monkeypatch.setenv("NLTK_DATA", "")
    train_punkt_tab(tmp_path, [row["question"] for row in rows("gsm8k", "train")])


def test_ifeval_instructions_exist_and_take_the_given_arguments(punkt_on_path):
    from lm_eval.tasks.leaderboard.ifeval import instructions_registry

    for row in rows("leaderboard_ifeval", "train"):
        for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"], strict=True):
            checker = instructions_registry.INSTRUCTION_DICT[instruction_id](instruction_id)
            checker.build_description(**{k: v for k, v in kwargs.items() if v})


def test_folder_is_small():
    size = sum(p.stat().st_size for p in OFFLINE.rglob("*") if p.is_file())
    assert size < 2_000_000
