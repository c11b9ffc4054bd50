"""Suite definitions against reference.md and against the installed harness's own task files."""

from __future__ import annotations

import pytest

from ibnorm_llm.evaluation.harness.suites import SUITES, SuiteError, select_tasks, suite_tasks, task_spec
from ibnorm_llm.evaluation.harness.tasks import SPLIT_KEYS, harness_tasks_root, load_task_yaml, resolve_task

# reference.md, "Open LLM Leaderboard task suites": name -> (shots, metric)
REFERENCE = {
    "v1": {
        "arc_challenge": (25, "acc_norm"),
        "hellaswag": (10, "acc_norm"),
        "mmlu": (5, "acc"),
        "truthfulqa_mc2": (0, "acc"),  # the mc2 score; the harness names it acc
        "winogrande": (5, "acc"),
        "gsm8k": (5, "exact_match"),
    },
    "v2": {
        "leaderboard_ifeval": (0, "prompt_level_strict_acc"),
        "leaderboard_bbh": (3, "acc_norm"),
        "leaderboard_math_hard": (4, "exact_match"),
        "leaderboard_gpqa": (0, "acc_norm"),
        "leaderboard_musr": (0, "acc_norm"),
        "leaderboard_mmlu_pro": (5, "acc"),
    },
}
SUBTASK_COUNTS = {"mmlu": 57, "leaderboard_bbh": 24, "leaderboard_math_hard": 7, "leaderboard_gpqa": 3, "leaderboard_musr": 3}


@pytest.mark.parametrize("suite", ["v1", "v2"])
def test_suites_match_reference(suite):
    assert {s.name: (s.num_fewshot, s.metric) for s in SUITES[suite]} == REFERENCE[suite]
    assert [s.name for s in SUITES[suite]] == list(REFERENCE[suite])  # leaderboard order


def test_all_is_v1_then_v2_and_subsets_keep_order():
    assert suite_tasks("all") == SUITES["v1"] + SUITES["v2"]
    assert [s.name for s in select_tasks("v1", ["gsm8k", "hellaswag"])] == ["hellaswag", "gsm8k"]
    assert task_spec("gsm8k").result_key == "exact_match,strict-match"


@pytest.mark.parametrize("call", [lambda: suite_tasks("v3"), lambda: select_tasks("v1", ["leaderboard_bbh"]),
                                  lambda: task_spec("truthfulqa")])
def test_unknown_suite_or_task_names_the_valid_ones(call):
    with pytest.raises(SuiteError, match="choose"):
        call()


@pytest.mark.parametrize("spec", suite_tasks("all"), ids=lambda s: s.name)
def test_harness_defines_every_task_with_our_metric(spec):
    tree = resolve_task(spec)
    if spec.name in SUBTASK_COUNTS:
        assert tree.is_group and tree.groups[0].name == spec.name
        assert len(tree.leaves) == SUBTASK_COUNTS[spec.name]
    else:
        assert not tree.is_group and [leaf.name for leaf in tree.leaves] == [spec.name]
    for leaf in tree.leaves:
        assert leaf.splits, f"{leaf.name} names no split"
        assert leaf.dataset_path and "dataset_path" in leaf.config
        metrics = {m["metric"] for m in leaf.config["metric_list"]}
        assert spec.metric in metrics, f"{leaf.name}: harness metrics {metrics}"
        # Where the harness YAML fixes a shot count (the v2 tasks, gsm8k), ours equals it.
        if leaf.config.get("num_fewshot") is not None:
            assert leaf.config["num_fewshot"] == spec.num_fewshot


def test_group_aggregation_is_weighted_by_size_as_in_the_harness():
    for name in SUBTASK_COUNTS:
        top = resolve_task(task_spec(name)).groups[0]
        (aggregate,) = [m for m in top.config["aggregate_metric_list"] if m["metric"] == task_spec(name).metric]
        assert aggregate["weight_by_size"] is True


def test_private_yaml_loader_still_merges_includes():
    # lm_eval.tasks._yaml_loader.load_yaml is private API: pin what we rely on.
    cfg = load_task_yaml(harness_tasks_root() / "arc" / "arc_challenge.yaml")
    assert cfg["task"] == "arc_challenge" and cfg["dataset_name"] == "ARC-Challenge"
    assert cfg["dataset_path"] == "allenai/ai2_arc"  # from the included arc_easy.yaml
    assert {k: cfg.get(k) for k in SPLIT_KEYS} == {
        "training_split": "train", "validation_split": "validation", "test_split": "test", "fewshot_split": None}
    assert "include" not in cfg
