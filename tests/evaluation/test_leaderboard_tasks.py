"""The task YAMLs a run evaluates: harness files included, our shots, local data files per split,
groups rebuilt with the harness's aggregation; and the harness loads them offline."""

from __future__ import annotations

from pathlib import Path

import yaml

from ibnorm_llm.evaluation.harness.offline import coverage, enable_offline_mode
from ibnorm_llm.evaluation.harness.suites import task_spec
from ibnorm_llm.evaluation.harness.task_dir import group_configs, leaf_config, write_task_dir
from ibnorm_llm.evaluation.harness.tasks import resolve_task

OFFLINE = Path(__file__).resolve().parents[2] / "eval" / "offline_data"


def test_leaf_config_includes_the_harness_file_and_points_every_split_at_local_jsonl():
    tree = resolve_task(task_spec("arc_challenge"))
    (leaf,) = tree.leaves
    cfg = leaf_config(leaf, 25, OFFLINE)
    assert cfg["include"] == str(leaf.yaml_path) and Path(cfg["include"]).is_file()
    assert cfg["num_fewshot"] == 25 and cfg["dataset_path"] == "json" and cfg["dataset_name"] is None
    files = cfg["dataset_kwargs"]["data_files"]
    assert set(files) == {"train", "validation", "test"}
    assert all(Path(f).is_absolute() and Path(f).is_file() and f.endswith(f"/arc_challenge/{s}.jsonl")
               for s, f in files.items())
    online = leaf_config(leaf, 25, None)
    assert "dataset_path" not in online and online["num_fewshot"] == 25  # online: the harness's own dataset


def test_musr_splits_are_named_after_the_subtasks():
    tree = resolve_task(task_spec("leaderboard_musr"))
    files = {leaf.name: leaf_config(leaf, 0, OFFLINE)["dataset_kwargs"]["data_files"] for leaf in tree.leaves}
    assert set(files["leaderboard_musr_team_allocation"]) == {"team_allocation"}


def test_partial_mmlu_keeps_the_category_groups_that_have_subjects():
    tree = resolve_task(task_spec("mmlu"))
    configs = {c["group"]: c for c in group_configs(tree, {"mmlu_nutrition", "mmlu_world_religions"})}
    assert set(configs) == {"mmlu", "mmlu_other", "mmlu_humanities"}
    assert configs["mmlu"]["task"] == ["mmlu_other", "mmlu_humanities"]
    assert configs["mmlu_other"]["task"] == ["mmlu_nutrition"]
    assert configs["mmlu"]["aggregate_metric_list"] == [{"metric": "acc", "weight_by_size": True}]


def test_harness_builds_offline_tasks_and_groups_from_the_written_folder(tmp_path):
    from lm_eval.tasks import TaskManager

    enable_offline_mode()
    trees = [resolve_task(task_spec(n)) for n in ("hellaswag", "leaderboard_bbh")]
    included = {t.spec.name: coverage(t, OFFLINE).included for t in trees}
    names = write_task_dir(trees, tmp_path / "tasks", offline_data=OFFLINE, included=included)
    assert names == ["hellaswag", "leaderboard_bbh"]
    written = yaml.safe_load((tmp_path / "tasks" / "_group_leaderboard_bbh.yaml").read_text())
    assert written["task"] == list(included["leaderboard_bbh"])

    loaded = TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False).load(names)
    assert set(loaded["groups"]) == {"leaderboard_bbh"}
    assert set(loaded["tasks"]) == {"hellaswag", *included["leaderboard_bbh"]}
    hellaswag = loaded["tasks"]["hellaswag"]
    assert hellaswag.config.num_fewshot == 10
    assert len(hellaswag.eval_docs) == 3  # the local validation split, through the harness's process_docs
    assert hellaswag.eval_docs[0]["query"] == "Slicing bread: A baker takes a warm loaf out of the oven. He"


def test_online_task_folder_keeps_the_harness_datasets_and_registers_every_subtask(tmp_path):
    from lm_eval.tasks import TaskManager

    trees = [resolve_task(task_spec(n)) for n in ("mmlu", "leaderboard_math_hard")]
    names = write_task_dir(trees, tmp_path / "tasks")
    assert names == ["mmlu", "leaderboard_math_hard"]
    anatomy = yaml.safe_load((tmp_path / "tasks" / "mmlu_anatomy.yaml").read_text())
    assert set(anatomy) == {"include", "task", "num_fewshot"} and anatomy["num_fewshot"] == 5
    manager = TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False)
    assert {"mmlu", "mmlu_stem", "leaderboard_math_hard"} <= set(manager.all_groups)
    assert len([t for t in manager.all_subtasks if t.startswith("mmlu_")]) == 57
    assert len([t for t in manager.all_subtasks if t.startswith("leaderboard_math_")]) == 7
