"""scripts/analyze.py end to end on two tiny checkpoints, and its errors on bad input."""

import json

import pytest

from ibnorm_llm.analysis.checkpoint import analyze_checkpoint
from ibnorm_llm.cli import run_command
from ibnorm_llm.config import AnalysisConfig


def analyze(argv: list[str]) -> int:
    return run_command("analyze", argv)


def test_analyze_writes_json_and_plots_for_overlaid_checkpoints(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "ib"
    argv = ["--checkpoint", *map(str, tiny_checkpoints), "--out", str(out), "--n-tokens", "128", "--beta", "0.5"]
    assert analyze(argv) == 0
    result = json.loads((out / "analysis.json").read_text())
    assert result["analysis"]["beta"] == 0.5 and result["analysis"]["n_tokens"] == 128
    assert list(result["checkpoints"]) == ["rms/final", "ibl/final"]
    for report in result["checkpoints"].values():
        assert [row["layer"] for row in report["layers"]] == [0, 1]
        for row in report["layers"]:
            assert row["ib_value"] == pytest.approx(row["i_target"] - 0.5 * row["i_previous"])
        assert len(report["norms"]) == 5
    ibl_norms = result["checkpoints"]["ibl/final"]["norms"]
    assert result["checkpoints"]["ibl/final"]["checkpoint"]["norm"]["kind"] == "ibnorm"
    assert {norm["num_groups"] for norm in ibl_norms} == {2}
    for name in ("ib_per_layer.png", "kurtosis_per_layer.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "rms/final: IB value per block" in capsys.readouterr().err


def test_layer_subset_and_embedding_targets(tiny_checkpoints):
    report = analyze_checkpoint(tiny_checkpoints[0], AnalysisConfig(n_tokens=64, target="embedding"), layers=[1])
    assert [row["layer"] for row in report["layers"]] == [1]
    assert report["target_entropy"] > 0


@pytest.mark.parametrize("extra, message", [
    (["--layers", "7"], "layer index 7 is out of range: the model has 2 decoder blocks"),
    (["--n-tokens", "100000"], "predictable tokens but n_tokens=100000"),
    (["--n-tokens", "8"], "at least 16 tokens"),
    (["--width-rule", "scott"], "width_rule='scott': must be one of"),
    (["--labels", "a", "b"], "2 names for 1 checkpoints"),
])
def test_bad_input_exits_2_with_a_clear_message(tiny_checkpoints, tmp_path, capsys, extra, message):
    argv = ["--checkpoint", str(tiny_checkpoints[0]), "--out", str(tmp_path / "x"), "--n-tokens", "64", *extra]
    assert analyze(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_checkpoint_files_are_named(tmp_path, capsys):
    assert analyze(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "no config.yaml" in capsys.readouterr().err
