"""The health report: reading monitor series back from metrics.jsonl, the summary's numbers, the figures,
and `ibnorm-llm health` on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ibnorm_llm.health import HealthError, load_run, write_health
from ibnorm_llm.health.series import block_index, depth_key, norm_role, short_name

NORMS = ["model.layers.0.input_layernorm", "model.layers.0.post_attention_layernorm",
         "model.layers.1.input_layernorm", "model.layers.1.post_attention_layernorm", "model.norm"]


def write_run(folder, *, saturated: bool = True, spike_at: int | None = None, steps=(10, 20, 30)) -> None:
    """A run folder whose metrics.jsonl holds monitor records at ``steps`` with known values:
    a norm's in_max is 10·(depth+1)·step, block i's massive is i + step/10."""
    folder.mkdir(parents=True)
    records = []
    for step in range(1, steps[-1] + 1):
        record = {"step": step, "loss": 5.0}
        if step in steps:
            for depth, name in enumerate(NORMS):
                record[f"monitor/norm/{name}/in_max"] = 10.0 * (depth + 1) * step
                record[f"monitor/norm/{name}/out_kurtosis"] = -1.0
                if saturated:
                    record[f"monitor/norm/{name}/saturated"] = 0.5 + depth * 0.1
            for block in range(2):
                record[f"monitor/block/{block}/massive"] = block + step / 10
                record[f"monitor/param/block_{block}/grad_norm"] = 1.0
            record["monitor/output/max_logit"] = float(step)
        if step == spike_at:
            record.update({"spike/kind": "loss (rank 1)", "spike/value": 9.0, "spike/mean": 5.0, "spike/std": 0.1,
                           "spike/layers": "block_1 (x12.0)", "spike/skipped": True})
        if spike_at is not None and step >= spike_at:
            record["spike_skipped_steps"] = 1
        records.append(record)
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")


def test_names_sort_by_depth_and_shorten():
    assert [block_index(n) for n in NORMS] == [0, 0, 1, 1, None]
    assert block_index("3") == 3 and block_index("block_12") == 12 and block_index("embed") is None
    assert block_index("transformer.h.4.ln_1") == 4 and norm_role("transformer.h.4.attn.q_norm") == "attn.q_norm"
    assert sorted(["model.norm", "block_1", "embed", "block_0", "head"], key=depth_key) == [
        "embed", "block_0", "block_1", "head", "model.norm"]
    assert short_name("model.layers.1.self_attn.q_norm") == "1.self_attn.q_norm" and short_name("model.norm") == "model.norm"


def test_load_run_reads_every_monitor_series_and_the_spikes(tmp_path):
    write_run(tmp_path / "a", spike_at=25)
    run = load_run(tmp_path / "a")
    assert run.label == "a" and run.steps == [10, 20, 30]
    assert run.places("norm") == NORMS
    assert run.values("norm", "model.layers.1.input_layernorm", "in_max") == [(10, 300.0), (20, 600.0), (30, 900.0)]
    assert run.values("output", "", "max_logit") == [(10, 10.0), (20, 20.0), (30, 30.0)]
    assert run.statistics("block") == ["massive"] and run.places("param") == ["block_0", "block_1"]
    (spike,) = run.spikes
    assert (spike.step, spike.kind, spike.value, spike.skipped) == (25, "loss (rank 1)", 9.0, True)
    assert run.skipped_steps == 1


def test_the_report_names_the_largest_values_where_and_when_and_draws_the_figures(tmp_path):
    write_run(tmp_path / "rms", saturated=False)
    write_run(tmp_path / "ib", spike_at=25)
    out = tmp_path / "health"
    path = write_health([load_run(tmp_path / "rms", "RMSNorm"), load_run(tmp_path / "ib", "IBNorm-T")], out)
    text = path.read_text()
    # the largest in_max: the last norm (depth 4: 10 * 5) at the last step (30)
    assert "| norm/in_max | IBNorm-T | 1500 | model.norm | 30 |" in text
    assert "| block/massive | RMSNorm | 4 | block 1 | 30 |" in text
    # at the last step: saturated mean over the 5 norms 0.5..0.9 is 0.7; RMSNorm has none
    assert "| norm/saturated | – | 0.7 [0.5, 0.9] |" in text
    assert "IBNorm-T: 1 spike (step 25); 1 step(s) skipped." in text and "RMSNorm: 0 spikes." in text
    # the largest saturated share over training is named apart from the last step's
    assert "largest over training 0.9 (model.norm, step 10)." in text
    assert "| IBNorm-T | 25 | loss (rank 1) | 9 | 5 ± 0.1 | block_1 (x12.0) | yes |" in text
    for figure in ("curves/norm_in_max.png", "curves/block_massive.png", "curves/output_max_logit.png",
                   "heatmaps/RMSNorm/norm.png", "heatmaps/IBNorm-T/block.png", "heatmaps/IBNorm-T/param.png"):
        assert f"({figure})" in text and (out / figure).stat().st_size > 5000, figure
    assert not (out / "heatmaps" / "RMSNorm" / "output.png").exists()  # one value per step: curves only


def test_a_run_without_monitor_statistics_says_how_to_record_them(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 5.0}) + "\n")
    with pytest.raises(HealthError, match="monitor.every > 0"):
        load_run(tmp_path / "plain")
    with pytest.raises(HealthError, match="no metrics.jsonl"):
        load_run(tmp_path / "nothing")


def test_the_command_writes_the_report_and_exits_2_on_bad_input(tmp_path):
    write_run(tmp_path / "a")
    write_run(tmp_path / "b")
    command = [sys.executable, "-m", "ibnorm_llm", "health"]
    done = subprocess.run([*command, str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "A", "B", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "health.md").read_text().startswith("# Health: A, B")
    missing = subprocess.run([*command, str(tmp_path / "missing")], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and missing.stderr.startswith("health error:") and "no metrics.jsonl" in missing.stderr
    labels = subprocess.run([*command, str(tmp_path / "a"), "--labels", "A", "B"], capture_output=True, text=True, timeout=300)
    assert labels.returncode == 2 and "one per run" in labels.stderr
    same = subprocess.run([*command, str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "A", "A", "--out",
                           str(tmp_path / "out2")], capture_output=True, text=True, timeout=300)
    assert same.returncode == 2 and "not unique" in same.stderr
