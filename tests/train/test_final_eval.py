"""eval.*: a leaderboard suite on final/ at the end of training, scores in metrics.jsonl."""

from __future__ import annotations

import json

import pytest
from train_helpers import ROOT, tiny_config

from ibnorm_llm.config import ConfigError, EvalConfig
from ibnorm_llm.evaluation.harness import run_final_eval
from ibnorm_llm.train.final_eval import check_final_eval
from ibnorm_llm.train.metrics import read_metrics
from ibnorm_llm.train.trainer import train

OFFLINE = ROOT / "eval" / "offline_data"


def test_eval_settings_are_checked_before_training(tmp_path):
    check_final_eval(EvalConfig(suite="none"), world_size=4)  # nothing to run: any launch is fine
    check_final_eval(EvalConfig(suite="v1", offline_data=str(OFFLINE)), world_size=1, final_eval=run_final_eval)
    with pytest.raises(ConfigError, match=r"eval.suite=v1: this train\(\) call was given no final_eval runner"):
        check_final_eval(EvalConfig(suite="v1", offline_data=str(OFFLINE)), world_size=1)
    with pytest.raises(ConfigError, match=r"eval.suite=v2 .* 2 processes.*ibnorm-llm eval --checkpoint"):
        check_final_eval(EvalConfig(suite="v2"), world_size=2)
    with pytest.raises(ConfigError, match="eval.offline_data=.*no such directory"):
        check_final_eval(EvalConfig(suite="v1", offline_data=str(tmp_path / "missing")), world_size=1)
    with pytest.raises(ConfigError, match="eval.limit=0"):
        tiny_config(["eval.suite=v1", "eval.limit=0"])
    with pytest.raises(ConfigError, match="eval.batch_size=0"):
        tiny_config(["eval.suite=v1", "eval.batch_size=0"])


@pytest.mark.slow
def test_eval_suite_runs_on_final_and_logs_headline_scores(tiny_overrides, restore_globals, tmp_path):
    result = train(tiny_config([
        *tiny_overrides, "run_name=lb", "train.max_steps=2", "eval.suite=v1", "eval.limit=1", "eval.smoke=true",
        "eval.batch_size=2", f"eval.offline_data={OFFLINE}",
    ]), final_eval=run_final_eval)
    summary = json.loads((result.run_dir / "eval_v1" / "summary.json").read_text())
    assert summary["checkpoint"] == str(result.final_checkpoint.resolve())
    assert (summary["suite"], summary["limit"], summary["batch_size"], summary["smoke"]) == ("v1", 1, 2, True)
    scores = {f"eval/{task}": entry["value"] for task, entry in summary["tasks"].items()}
    assert set(scores) == {"eval/arc_challenge", "eval/hellaswag", "eval/mmlu", "eval/truthfulqa_mc2",
                           "eval/winogrande", "eval/gsm8k"}
    assert result.eval_scores == scores
    records = read_metrics(result.run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]  # the scores join the final step's record
    assert {k: records[-1][k] for k in scores} == scores and "loss" in records[-1]
    # What the leaderboard finds wrong with its inputs after training reads as a bad eval.* setting.
    empty_dir = tmp_path / "no_task_data"
    empty_dir.mkdir()
    with pytest.raises(ConfigError, match=r"(?s)eval.suite=v1: offline data .*is saved; fix eval.\* and run .ibnorm-llm eval --checkpoint"):
        run_final_eval(EvalConfig(suite="v1", offline_data=str(empty_dir)), result.final_checkpoint, empty_dir / "out", "cpu")
