"""Bad input to the leaderboard runner: clear errors, raised before any model is loaded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ibnorm_llm.checkpoint import CheckpointError, inspect_checkpoint
from ibnorm_llm.cli import run_command
from ibnorm_llm.evaluation.harness import leaderboard
from ibnorm_llm.evaluation.harness.leaderboard import run_leaderboard
from ibnorm_llm.evaluation.harness.offline import OfflineDataError
from ibnorm_llm.evaluation.harness.run_identity import run_fields
from ibnorm_llm.evaluation.harness.suites import SuiteError

REPO = Path(__file__).resolve().parents[2]
OFFLINE = REPO / "eval" / "offline_data"


def eval_cli(argv: list[str]) -> int:
    return run_command("eval", argv)


@pytest.fixture
def fake_checkpoint(tmp_path) -> Path:
    """The files of a checkpoint directory; the weights are never read by these tests."""
    path = tmp_path / "ckpt"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "model.safetensors").write_bytes(b"not read")
    (path / "tokenizer.json").write_text("{}")
    return path


@pytest.fixture(autouse=True)
def no_model_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded although the input was bad")

    monkeypatch.setattr(leaderboard, "_load_model_and_tokenizer", refuse)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda p: (p / "config.json").unlink(), "no config.json"),
        (lambda p: (p / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda p: (p / "model.safetensors").unlink(), "no model weights"),
        (lambda p: (p / "tokenizer.json").unlink(), "no tokenizer files"),
        (lambda p: (p / "config.yaml").write_text("model:\n  nrom: {}\n"), "not a valid run config"),
        (lambda p: (p / "trainer_state").mkdir(), "incomplete"),
    ],
)
def test_broken_checkpoints_are_named(fake_checkpoint, tmp_path, breakage, message):
    breakage(fake_checkpoint)
    with pytest.raises(CheckpointError, match=message):
        run_leaderboard(fake_checkpoint, "v1", tmp_path / "out", offline_data=OFFLINE, smoke=True)


def test_missing_checkpoint_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such directory"):
        inspect_checkpoint(tmp_path / "nope")


def test_checkpoint_without_run_config_has_no_identity_but_loads(fake_checkpoint):
    info = inspect_checkpoint(fake_checkpoint)
    assert info.config is None and info.step is None
    assert run_fields(info)["run_name"] == "ckpt" and run_fields(info)["norm"] is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"suite": "v3"}, "unknown suite 'v3'"),
        ({"suite": "v1", "tasks": ["leaderboard_bbh"]}, "not in suite 'v1'"),
        ({"suite": "v1", "limit": 0}, "--limit 0"),
        ({"suite": "v1", "batch_size": 0}, "--batch-size 0"),
    ],
)
def test_bad_suite_task_or_sizes(fake_checkpoint, tmp_path, kwargs, message):
    with pytest.raises(SuiteError, match=message):
        run_leaderboard(fake_checkpoint, out_dir=tmp_path / "out", **kwargs)


def test_tasks_without_offline_data_are_listed_with_their_files(fake_checkpoint, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OfflineDataError) as err:
        run_leaderboard(fake_checkpoint, "v1", tmp_path / "out", tasks=["hellaswag", "gsm8k"], offline_data=empty)
    text = str(err.value)
    assert "hellaswag: no offline data" in text and "gsm8k: no offline data" in text
    assert str(empty / "hellaswag" / "train.jsonl") in text and "ibnorm-llm prefetch" in text


def test_partial_groups_need_an_explicit_flag(fake_checkpoint, tmp_path):
    with pytest.raises(OfflineDataError) as err:
        run_leaderboard(fake_checkpoint, "v1", tmp_path / "out", tasks=["mmlu"], offline_data=OFFLINE)
    text = str(err.value)
    assert "mmlu: 53 of 57 subtasks have no offline data" in text
    assert "mmlu_anatomy" in text and "--allow-partial-groups" in text


def test_missing_offline_directory(fake_checkpoint, tmp_path):
    with pytest.raises(OfflineDataError, match="no such directory"):
        run_leaderboard(fake_checkpoint, "v1", tmp_path / "out", offline_data=tmp_path / "nope")


def test_math_extras_missing_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # makes `import math_verify` raise ImportError
    with pytest.raises(ImportError, match="pip install 'math_verify'"):
        leaderboard.check_math_extras()


def test_cli_reports_errors_without_a_traceback(fake_checkpoint, tmp_path, capsys):
    (fake_checkpoint / "config.json").unlink()
    code = eval_cli(["--checkpoint", str(fake_checkpoint), "--suite", "v1", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "error: --checkpoint" in capsys.readouterr().err


def test_unavailable_training_corpus_points_at_no_perplexity(tmp_path):
    from ibnorm_llm.config import load_config
    from ibnorm_llm.data import DataError
    from ibnorm_llm.evaluation.harness.perplexity import held_out_perplexity

    cfg = load_config(None, ["data.source=files", f"data.files=[{tmp_path / 'gone.jsonl'}]"])
    with pytest.raises(DataError, match="gone.jsonl.*--no-perplexity"):
        held_out_perplexity(None, None, cfg, "cpu")


def test_offline_hub_without_offline_data_names_task_dataset_and_both_fixes(fake_checkpoint, tmp_path, monkeypatch,
                                                                          capsys):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))  # nothing cached
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    out = tmp_path / "out"
    started = time.perf_counter()
    code = eval_cli(["--checkpoint", str(fake_checkpoint), "--suite", "small", "--tasks", "arc_easy",
                            "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and time.perf_counter() - started < 20
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "task arc_easy needs the dataset allenai/ai2_arc from the Hugging Face Hub" in err
    assert "HF_HUB_OFFLINE=1" in err and "--offline-data DIR" in err and "ibnorm-llm prefetch" in err
    assert not out.exists()


def test_a_failed_evaluation_leaves_no_result_folder(fake_checkpoint, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("harness failed half way")

    monkeypatch.setattr(leaderboard, "_build_lm", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="half way"):
        run_leaderboard(fake_checkpoint, "small", out, tasks=["arc_easy"], offline_data=OFFLINE, smoke=True)
    assert not out.exists()
