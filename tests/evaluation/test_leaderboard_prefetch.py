"""eval/prefetch.py writes exactly the offline layout; tested with a stand-in loader, never the network."""

from __future__ import annotations

import json

import pytest

from ibnorm_llm.evaluation.harness.offline import check_offline_data
from ibnorm_llm.evaluation.harness.prefetch import prefetch
from ibnorm_llm.evaluation.harness.suites import select_tasks
from ibnorm_llm.evaluation.harness.tasks import resolve_task


class FakeHub:
    """``load_dataset`` stand-in: every requested dataset has every split, rows naming their origin."""

    def __init__(self, fail: set[str] = frozenset()):
        self.calls: list[tuple] = []
        self.fail = fail

    def load_dataset(self, path, name=None, **kwargs):
        self.calls.append((path, name))
        if path in self.fail:
            raise ConnectionError(f"{path} is gated")
        splits = ("train", "validation", "test", "dev", "murder_mysteries", "object_placements", "team_allocation")
        return {s: [{"dataset": path, "config": name, "split": s, "i": i} for i in range(3)] for s in splits}

    @staticmethod
    def nltk_download(package, download_dir):
        assert package == "punkt_tab"
        target = __import__("pathlib").Path(download_dir) / "tokenizers" / "punkt_tab" / "english"
        target.mkdir(parents=True)
        return True


def test_prefetch_writes_the_layout_the_runner_reads(tmp_path):
    hub = FakeHub()
    manifest = prefetch(tmp_path, "v2", ["leaderboard_musr", "leaderboard_gpqa"],
                        load_dataset=hub.load_dataset, nltk_download=hub.nltk_download)
    # MuSR's three subtasks share one dataset: loaded once.
    assert sorted(hub.calls) == [("Idavidrein/gpqa", "gpqa_diamond"), ("Idavidrein/gpqa", "gpqa_extended"),
                                 ("Idavidrein/gpqa", "gpqa_main"), ("TAUR-Lab/MuSR", None)]
    assert manifest["tasks"]["leaderboard_musr_team_allocation"] == {"team_allocation": 3}
    rows = [json.loads(line) for line in (tmp_path / "leaderboard_gpqa_main" / "train.jsonl").read_text().splitlines()]
    assert rows[0] == {"dataset": "Idavidrein/gpqa", "config": "gpqa_main", "split": "train", "i": 0}
    assert (tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english").is_dir()
    trees = [resolve_task(s) for s in select_tasks("v2", ["leaderboard_musr", "leaderboard_gpqa"])]
    covered = check_offline_data(trees, tmp_path)  # complete: no partial groups
    assert all(not cov.missing for cov in covered.values())
    assert not list(tmp_path.rglob(".*.tmp"))


def test_failed_datasets_are_listed_after_the_rest_is_written(tmp_path):
    hub = FakeHub(fail={"Idavidrein/gpqa"})
    with pytest.raises(RuntimeError, match="3 item\\(s\\) failed") as err:
        prefetch(tmp_path, "v2", ["leaderboard_gpqa", "leaderboard_mmlu_pro"],
                 load_dataset=hub.load_dataset, nltk_download=hub.nltk_download)
    assert "leaderboard_gpqa_diamond: Idavidrein/gpqa (gpqa_diamond): ConnectionError" in str(err.value)
    assert "huggingface-cli login" in str(err.value)
    assert (tmp_path / "leaderboard_mmlu_pro" / "validation.jsonl").is_file()
    assert json.loads((tmp_path / "manifest.json").read_text())["failed"]
