"""Comparison tables from handwritten summary.json fixtures (tests/evaluation/fixtures/results/).

The fixtures: llama-60m, suite v1, step 10000. rmsnorm (the baseline) seeds 0-2; ibnorm L λ=2 and
λ=4 and T λ=2 seeds 0-2 (paired with the baseline); ibnorm T λ=4 seeds 1-3 (unmatched: Welch);
ibnorm L λ=3 seed 0 only; layernorm seed 0 only, without gsm8k and without held-out perplexity.
Expected values are computed here from the raw JSON, independently of the module.
"""

import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from ibnorm_llm.cli import run_command
from ibnorm_llm.evaluation.comparison import (
    MISSING,
    ResultError,
    build_comparison,
    load_summaries,
    load_summary,
    parse_summary,
    to_csv,
    to_markdown,
    write_comparison,
)
from ibnorm_llm.evaluation.comparison.plots import sweeps

RESULTS = Path(__file__).parent / "fixtures" / "results"
V1 = ("arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande", "gsm8k")


def raw(name: str) -> dict:
    return json.loads((RESULTS / name / "summary.json").read_text())


def scores(names: list[str], task: str) -> np.ndarray:
    return np.array([100 * raw(n)["tasks"][task]["value"] for n in names])


def v1_avgs(names: list[str]) -> np.ndarray:
    return np.array([100 * np.mean([raw(n)["tasks"][t]["value"] for t in V1]) for n in names])


BASE = ["rmsnorm_s0", "rmsnorm_s1", "rmsnorm_s2"]
L4 = ["ibnorm_l4_s0", "ibnorm_l4_s1", "ibnorm_l4_s2"]
T4 = ["ibnorm_t4_s1", "ibnorm_t4_s2", "ibnorm_t4_s3"]
LABEL_L4 = "llama-60m ibnorm L λ=4 step 10000"


@pytest.fixture(scope="module")
def comparison():
    return build_comparison(load_summaries(sorted(RESULTS.iterdir())))


def test_runs_differing_only_in_seed_become_one_row(comparison):
    labels = [row.label for row in comparison.rows]
    assert len(labels) == 7 and len(set(labels)) == 7
    row = comparison.row(LABEL_L4)
    assert row.seeds == (0, 1, 2) and row.n_seeds == 3
    expected = scores(L4, "hellaswag")
    cell = row.cells["hellaswag"]
    assert cell.mean == pytest.approx(expected.mean())
    assert cell.sd == pytest.approx(expected.std(ddof=1))
    assert row.cells["v1_avg"].mean == pytest.approx(v1_avgs(L4).mean())
    losses = [raw(n)["perplexity"]["loss"] for n in L4]
    assert row.cells["loss"].mean == pytest.approx(np.mean(losses))


def test_relative_change_and_paired_test_against_baseline(comparison):
    row = comparison.row(LABEL_L4)
    assert comparison.rows[row.baseline_index].label == "llama-60m rmsnorm step 10000"
    run, base = scores(L4, "arc_challenge"), scores(BASE, "arc_challenge")
    delta = row.deltas["arc_challenge"]
    assert delta.pct == pytest.approx(100 * (run.mean() - base.mean()) / base.mean())
    assert delta.diff == pytest.approx(run.mean() - base.mean())
    assert delta.test == "paired"
    assert delta.p_value == pytest.approx(stats.ttest_rel(run, base).pvalue)
    avg = row.deltas["v1_avg"]
    assert avg.pct == pytest.approx(100 * (v1_avgs(L4).mean() - v1_avgs(BASE).mean()) / v1_avgs(BASE).mean())
    assert avg.p_value == pytest.approx(stats.ttest_rel(v1_avgs(L4), v1_avgs(BASE)).pvalue)
    ppl_run = np.array([raw(n)["perplexity"]["ppl"] for n in L4])
    ppl_base = np.array([raw(n)["perplexity"]["ppl"] for n in BASE])
    assert row.deltas["ppl"].pct == pytest.approx(100 * (ppl_run.mean() - ppl_base.mean()) / ppl_base.mean())
    assert row.deltas["ppl"].pct < 0  # this run's perplexity is lower than the baseline's


def test_unmatched_seeds_use_welch(comparison):
    row = comparison.row("llama-60m ibnorm T λ=4 step 10000")
    assert row.seeds == (1, 2, 3)
    run, base = scores(T4, "mmlu"), scores(BASE, "mmlu")
    assert row.deltas["mmlu"].test == "welch"
    assert row.deltas["mmlu"].p_value == pytest.approx(stats.ttest_ind(run, base, equal_var=False).pvalue)
    assert "Welch t (seeds differ)" in to_markdown(comparison)


def test_single_seed_row_says_so_and_has_no_test(comparison):
    row = comparison.row("llama-60m ibnorm L λ=3 step 10000")
    assert row.n_seeds == 1
    cell = row.cells["winogrande"]
    assert cell.sd is None
    assert cell.stderr == pytest.approx(100 * raw("ibnorm_l3_s0")["tasks"]["winogrande"]["stderr"])
    assert row.deltas["winogrande"].p_value is None and row.deltas["winogrande"].test is None
    line = next(x for x in to_markdown(comparison).splitlines() if x.startswith("| llama-60m | ibnorm | L | 3 |"))
    assert "1 (single-seed)" in line
    assert f"{cell.mean:.2f} ± {cell.stderr:.2f} se" in line


def test_missing_task_is_a_dash_and_the_average_names_it(comparison):
    row = comparison.row("llama-60m layernorm step 10000")
    assert row.cells["gsm8k"].mean is None
    assert row.cells["v1_avg"].mean is None
    assert row.cells["ppl"].mean is None
    assert row.missing == {"v1": ("gsm8k",)}
    assert row.deltas["gsm8k"].pct is None
    md = to_markdown(comparison)
    line = next(x for x in md.splitlines() if x.startswith("| llama-60m | layernorm |"))
    assert f"{MISSING} (missing: gsm8k)" in line
    assert " 0.00 " not in line
    assert "v1 avg needs gsm8k, missing from the results of seed 0" in md
    record = next(r for r in csv.DictReader(io.StringIO(to_csv(comparison))) if r["norm"] == "layernorm")
    assert record["gsm8k"] == MISSING and record["v1_avg"] == MISSING and record["ppl"] == MISSING
    assert record["v1_avg_missing"] == "gsm8k"
    assert record["single_seed"] == "True"


def test_best_value_per_column_is_marked(comparison):
    groups = {
        "L2": ["ibnorm_l2_s0", "ibnorm_l2_s1", "ibnorm_l2_s2"], "L3": ["ibnorm_l3_s0"], "L4": L4, "T4": T4,
        "T2": ["ibnorm_t2_s0", "ibnorm_t2_s1", "ibnorm_t2_s2"], "base": BASE, "ln": ["layernorm_s0"],
    }
    means = {name: scores(runs, "arc_challenge").mean() for name, runs in groups.items()}
    assert max(means, key=means.get) == "L4"
    best = comparison.best["arc_challenge"]
    assert [comparison.rows[i].label for i in best] == [LABEL_L4]
    ppl_means = {name: np.mean([raw(n)["perplexity"]["ppl"] for n in runs]) for name, runs in groups.items()
                 if name != "ln"}
    assert max(ppl_means, key=ppl_means.get) == "T4"  # the worst must not be marked: lower is better
    assert [comparison.rows[i].label for i in comparison.best["ppl"]] == [LABEL_L4]
    md_line = next(x for x in to_markdown(comparison).splitlines() if x.startswith("| llama-60m | ibnorm | L | 4 |"))
    assert f"**{comparison.row(LABEL_L4).cells['arc_challenge'].mean:.2f} ± " in md_line
    record = next(r for r in csv.DictReader(io.StringIO(to_csv(comparison))) if r["lam"] == "4" and r["variant"] == "L")
    assert {"arc_challenge", "ppl", "arc_challenge_delta_pct"} <= set(record["best_in"].split(";"))


def test_csv_holds_the_same_numbers(comparison):
    records = list(csv.DictReader(io.StringIO(to_csv(comparison))))
    assert len(records) == len(comparison.rows)
    record = next(r for r in records if r["lam"] == "4" and r["variant"] == "L")
    row = comparison.row(LABEL_L4)
    assert float(record["hellaswag"]) == pytest.approx(row.cells["hellaswag"].mean, rel=1e-5)
    assert float(record["hellaswag_sd"]) == pytest.approx(row.cells["hellaswag"].sd, rel=1e-5)
    assert float(record["v1_avg_p"]) == pytest.approx(row.deltas["v1_avg"].p_value, rel=1e-5)
    assert record["seeds"] == "0;1;2" and record["n_seeds"] == "3"
    assert record["baseline"] == "llama-60m rmsnorm step 10000"
    base = next(r for r in records if r["norm"] == "rmsnorm")
    assert base["baseline"] == "self" and base["hellaswag_delta_pct"] == MISSING


def test_sweep_detection(comparison):
    found = sweeps(comparison)
    assert len(found) == 1
    (rows,) = found.values()
    assert sorted({r.lam for r in rows}) == [2.0, 3.0, 4.0]
    assert {r.variant for r in rows} == {"L", "T"}


def summary(**changes) -> dict:
    data = raw("rmsnorm_s0")
    run = {**data["run"], **changes.pop("run", {})}
    return {**data, **changes, "run": run}


def test_gpt2_defaults_to_layernorm_and_baseline_is_overridable():
    runs = [
        parse_summary(summary(run={"preset": "gpt2-124m", "norm": "layernorm", "seed": 0}), "a.json"),
        parse_summary(summary(run={"preset": "gpt2-124m", "norm": "rmsnorm", "seed": 0}), "b.json"),
        parse_summary(summary(run={"preset": "gpt2-124m", "norm": "ibnorm", "variant": "L", "lam": 4, "seed": 0}),
                      "c.json"),
    ]
    default = build_comparison(runs)
    assert default.baseline_norms == {"gpt2-124m": "layernorm"}
    assert [r.norm for r in default.rows if r.is_baseline] == ["layernorm"]
    override = build_comparison(runs, baseline="rmsnorm")
    assert [r.norm for r in override.rows if r.is_baseline] == ["rmsnorm"]
    with pytest.raises(ResultError, match="--baseline dyt: no result uses that norm"):
        build_comparison(runs, baseline="dyt")
    unknown = build_comparison([parse_summary(summary(run={"preset": "mamba-1"}), "d.json")])
    assert any("pass --baseline" in note for note in unknown.notes)


def test_write_comparison_and_cli(tmp_path):
    out = tmp_path / "out"
    run_command("compare", [str(d) for d in sorted(RESULTS.iterdir())] + ["--out", str(out)])
    for name in ("comparison.md", "comparison.csv", "task_deltas_llama-60m.png", "lambda_sweep_llama-60m.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "task_deltas_llama-60m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Relative change against the baseline (%)" in (out / "comparison.md").read_text()
    assert run_command("compare", [str(tmp_path), "--out", str(out)]) == 2

    # The demo's call: a single-seed pair, no sweep, held-out loss beside the scores.
    demo = write_comparison([RESULTS / "rmsnorm_s0", RESULTS / "ibnorm_l4_s0"], tmp_path / "demo", title="Demo")
    md = (tmp_path / "demo" / "comparison.md").read_text()
    assert md.startswith("# Demo") and "held-out loss" in md
    assert not list((tmp_path / "demo").glob("lambda_sweep_*.png"))
    assert len(demo.rows) == 2


def copy_result(tmp_path, name, data=None) -> Path:
    target = tmp_path / name
    shutil.copytree(RESULTS / name, target)
    if data is not None:
        (target / "summary.json").write_text(json.dumps(data))
    return target


def test_bad_input_names_the_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ResultError, match=f"{empty}.*no summary.json"):
        load_summary(empty)

    corrupt = copy_result(tmp_path, "ibnorm_l2_s0")
    (corrupt / "summary.json").write_text('{"suite": "v1", ')
    with pytest.raises(ResultError, match=f"{corrupt}/summary.json: not valid JSON"):
        load_summary(corrupt)

    v2 = copy_result(tmp_path, "ibnorm_l2_s1", {**raw("ibnorm_l2_s1"), "suite": "v2"})
    with pytest.raises(ResultError, match=rf'mixed suites: suite="v1" in .*rmsnorm_s0.*suite="v2" in {v2}'):
        build_comparison(load_summaries([RESULTS / "rmsnorm_s0", v2]))

    limit = copy_result(tmp_path, "ibnorm_l2_s2", {**raw("ibnorm_l2_s2"), "limit": None})
    with pytest.raises(ResultError, match="mixed --limit values"):
        build_comparison(load_summaries([RESULTS / "rmsnorm_s0", limit]))

    percent = raw("ibnorm_t2_s0")
    percent["tasks"]["mmlu"]["value"] = 24.5
    bad = copy_result(tmp_path, "ibnorm_t2_s0", percent)
    with pytest.raises(ResultError, match=rf"{bad}/summary.json: 'tasks.mmlu.value' = 24.5 is outside \[0, 1\]"):
        load_summary(bad)

    no_seed = raw("ibnorm_t2_s1")
    del no_seed["run"]["seed"]
    with pytest.raises(ResultError, match="x.json: missing key 'run.seed'"):
        parse_summary(no_seed, "x.json")

    metric = raw("ibnorm_t2_s2")
    metric["tasks"]["mmlu"]["metric"] = "acc_norm"
    with pytest.raises(ResultError, match="task mmlu reports metric 'acc' in .*rmsnorm_s0.* but 'acc_norm' in y.json"):
        build_comparison([load_summary(RESULTS / "rmsnorm_s0"), parse_summary(metric, "y.json")])

    with pytest.raises(ResultError, match="same run .*seed 0"):
        build_comparison(load_summaries([RESULTS / "rmsnorm_s0", RESULTS / "rmsnorm_s0"]))


def test_other_run_fields_split_rows_and_pick_the_matching_baseline():
    def run(norm, lr, seed, **extra):
        return parse_summary(summary(run={"norm": norm, "seed": seed, "run_name": f"{norm}{lr}s{seed}", "lr": lr},
                                     **extra), f"{norm}-{lr}-{seed}.json")

    no_gsm8k = {k: v for k, v in raw("rmsnorm_s0")["tasks"].items() if k != "gsm8k"}
    runs = [run("rmsnorm", lr, s) for lr in (1e-3, 3e-3) for s in (0, 1, 2)]
    runs += [run("dyt", 1e-3, 0), run("dyt", 1e-3, 1, tasks=no_gsm8k), run("dyt", 3e-3, 0)]
    comparison = build_comparison(runs)
    assert comparison.varying_extras == ("lr",)
    assert len(comparison.rows) == 4
    dyt = comparison.row("llama-60m dyt step 10000 lr=0.001")
    assert comparison.rows[dyt.baseline_index].label == "llama-60m rmsnorm step 10000 lr=0.001"
    assert dyt.cells["v1_avg"].by_seed.keys() == {0}  # seed 1 lacks gsm8k
    assert "llama-60m dyt step 10000 lr=0.001: v1 avg is the mean over seeds 0 only (others lack it)" in comparison.notes
    header = to_markdown(comparison).split("## Scores")[1].splitlines()[2]
    assert header.startswith("| preset | norm | variant | λ | step | tokens | lr | seeds |")


def test_runner_notes_and_settings_that_differ(comparison):
    assert "eval note (1 of 17 results): held-out perplexity skipped (--no-perplexity)" in comparison.notes
    bigger_batch = parse_summary({**raw("ibnorm_l2_s0"), "batch_size": 16}, "b16.json")
    notes = build_comparison([load_summary(RESULTS / "rmsnorm_s0"), bigger_batch]).notes
    assert any(n.startswith("results differ in batch size (batch_size=8 in ") and "b16.json" in n for n in notes)
    smoke = parse_summary({**raw("ibnorm_l2_s0"), "smoke": True, "max_gen_toks": 32}, "smoke.json")
    with pytest.raises(ResultError, match="mixed smoke settings: .*smoke=true in smoke.json"):
        build_comparison([load_summary(RESULTS / "rmsnorm_s0"), smoke])


def test_checkpoints_without_run_config_get_their_own_rows():
    stock = {"run_name": "gpt2", "preset": None, "norm": None, "variant": None, "lam": None, "seed": None}
    runs = [
        parse_summary({**raw("rmsnorm_s0"), "run": stock}, "stock_a.json"),
        parse_summary({**raw("rmsnorm_s1"), "run": {**stock, "run_name": "gpt2-medium"}}, "stock_b.json"),
        load_summary(RESULTS / "rmsnorm_s0"),
    ]
    comparison = build_comparison(runs)
    stock_rows = [r for r in comparison.rows if r.preset is None]
    assert [r.run_names for r in stock_rows] == [("gpt2",), ("gpt2-medium",)]
    assert all(r.baseline_index is None and not r.is_baseline for r in stock_rows)
    assert any("without a run config" in n for n in comparison.notes)
    md = to_markdown(comparison)
    assert '| — | — | — | — | 10000 | 1310720000 | "gpt2" | 1 (single-seed) |' in md


def test_norm_options_split_rows_but_share_the_baseline():
    std = {**raw("ibnorm_l4_s0")["run"], "norm_options": {"deviation": "std"}}
    runs = [load_summary(RESULTS / "rmsnorm_s0"), load_summary(RESULTS / "ibnorm_l4_s0"),
            parse_summary({**raw("ibnorm_l4_s0"), "run": std}, "std.json")]
    comparison = build_comparison(runs)
    assert comparison.varying_extras == ("norm_options",)
    ibnorm_rows = [r for r in comparison.rows if r.norm == "ibnorm"]
    assert len(ibnorm_rows) == 2
    assert all(comparison.rows[r.baseline_index].norm == "rmsnorm" for r in ibnorm_rows)


def test_cli_skips_folders_without_results_with_a_note(tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    (unfinished / "tasks").mkdir(parents=True)  # what a failed evaluation used to leave behind
    run_command("compare", [str(RESULTS / "rmsnorm_s0"), str(RESULTS / "ibnorm_l4_s0"), str(unfinished), "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert f"note: skipping {unfinished}: no summary.json" in captured.err
    assert "2 rows from 2 results" in captured.out


def test_best_is_only_marked_among_rows_of_the_same_step_and_tokens():
    longer = raw("ibnorm_t2_s0")  # a run trained 4x longer, with the highest scores of all
    longer.update(step=40000, tokens=4 * (longer.get("tokens") or 1))
    for entry in longer["tasks"].values():
        entry["value"] = 0.99
    longer["perplexity"]["ppl"] = 1.5
    comparison = build_comparison(load_summaries(sorted(RESULTS.iterdir())) + [parse_summary(longer, "longer.json")])
    (index,) = [i for i, row in enumerate(comparison.rows) if row.step == 40000]
    # alone at its step, it has nothing to beat; the step-10000 rows keep their own best
    assert all(index not in marked for marked in comparison.best.values())
    assert [comparison.rows[i].label for i in comparison.best["arc_challenge"]] == [LABEL_L4]


def _run_folder(root, name, norm, seed, eval_loss, test_loss, step=40):
    from ibnorm_llm.config import load_config, save_config

    folder = root / name
    folder.mkdir(parents=True)
    save_config(load_config(None, [f"run_name={name}", "model.preset=llama-60m", *norm, f"train.seed={seed}"]),
                folder / "config.yaml")
    records = [{"step": step // 2, "loss": 5.0, "tokens": 1000, "eval_loss": eval_loss + 1, "eval_ppl": 1.0},
               {"step": step, "loss": 4.0, "tokens": 2000},  # a logging step without evaluation
               {"step": step, "loss": 4.0, "tokens": 2000, "eval_loss": eval_loss, "eval_ppl": math.exp(eval_loss),
                "eval_bpb": eval_loss / 2, "test_loss": test_loss, "test_ppl": math.exp(test_loss),
                "test_bpb": test_loss / 2}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_training_run_folders_compare_on_held_out_and_test_numbers(tmp_path, capsys):
    runs = tmp_path / "runs"
    ibn = ["model.norm.kind=ibnorm", "model.norm.variant=L", "model.norm.lam=4"]
    folders = [_run_folder(runs, f"rms_s{s}", ["model.norm.kind=rmsnorm"], s, 3.0 + s / 10, 3.1 + s / 10)
               for s in range(3)]
    folders += [_run_folder(runs, f"ibn_s{s}", ibn, s, 2.9 + s / 10, 3.0 + s / 10) for s in range(3)]
    unevaluated = runs / "fresh"
    unevaluated.mkdir()
    out = tmp_path / "cmp"
    run_command("compare", [*map(str, folders), str(unevaluated), "--out", str(out)])
    assert "2 rows from 6 results" in capsys.readouterr().out
    md = (out / "comparison.md").read_text()
    assert "Training runs" in md and "held-out loss" in md and "test loss" in md and "test bpb" in md
    comparison = build_comparison(load_summaries(folders))
    (ibn_row,) = [r for r in comparison.rows if r.norm == "ibnorm"]
    assert ibn_row.step == 40 and ibn_row.tokens == 2000 and ibn_row.n_seeds == 3
    assert ibn_row.cells["loss"].mean == pytest.approx(3.0) and ibn_row.cells["test_loss"].mean == pytest.approx(3.1)
    assert ibn_row.deltas["test_loss"].pct == pytest.approx(100 * (3.1 - 3.2) / 3.2)
    with pytest.raises(ResultError, match="mixed suites"):
        build_comparison(load_summaries([folders[0], RESULTS / "rmsnorm_s0"]))
