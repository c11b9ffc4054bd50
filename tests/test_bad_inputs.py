"""Bad inputs, one table: every row is a one-line message naming the problem, exit status 2 and no
traceback (docs/reliability.md lists the same rows).

Each row runs the ``ibnorm-llm`` subcommand in this process (fast); ``test_bad_input_as_a_subprocess``
(slow) runs one row per subcommand and per kind of failure (config, config file, data, run folder,
resume, checkpoint) as the command a user types, ``python -m ibnorm_llm ...``: the exit path from the
error to status 2 is one for all (ibnorm_llm/cli/errors.py), so the other rows would repeat a
10-second process start to test the same lines.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "train"))
from train_helpers import overrides_for  # noqa: E402

CONFIG = str(ROOT / "configs" / "llama_tiny_rmsnorm.yaml")
IBNORM = ["model.norm.kind=ibnorm", "model.norm.variant=L", "model.norm.lam=4.0"]


def pretrain(*args):
    return ("train", ["--config", CONFIG, *args])


def tiny(ctx, *args):
    """A tiny run's overrides (the test corpus and tokenizer) plus ``args``."""
    return pretrain(*ctx["tiny"], "train.max_steps=1", *args)


# (id, script and its arguments from the context, a piece of the one-line message)
ROWS = [
    # config keys and values
    ("unknown key", lambda c: pretrain("train.max_stepz=3"), "unknown config key 'train.max_stepz'; did you mean 'train.max_steps'?"),
    ("unknown section", lambda c: pretrain("trian.seed=1"), "unknown config key 'trian'; did you mean 'train'?"),
    ("unknown norm option", lambda c: pretrain("model.norm.lamda=3"), "did you mean 'model.norm.lam'?"),
    ("unknown norm kind", lambda c: pretrain("model.norm.kind=ibnrom"), "model.norm.kind='ibnrom': unknown norm"),
    ("wrong type", lambda c: pretrain("train.max_steps=ten"), "train.max_steps='ten': expected an integer"),
    ("not a bool", lambda c: pretrain("train.compile=1"), "train.compile=1: expected true or false"),
    ("bad choice", lambda c: pretrain("data.packing=zip"), "data.packing='zip': must be one of concat, pad"),
    ("zero steps", lambda c: pretrain("train.max_steps=0"), "train.max_steps=0: must be a positive integer"),
    ("zero lr", lambda c: pretrain("optim.lr=0"), "optim.lr=0.0: must be > 0"),
    ("min lr ratio", lambda c: pretrain("optim.min_lr_ratio=2"), "optim.min_lr_ratio=2.0: must be in [0, 1]"),
    ("one beta", lambda c: pretrain("optim.betas=[0.9]"), "optim.betas=[0.9]: expected 2 values"),
    ("two batch sizes", lambda c: pretrain("train.global_batch_size=8", "train.global_batch_tokens=1024"),
     "train.global_batch_size and train.global_batch_tokens are both set"),
    ("files without source", lambda c: pretrain("data.files=[a.jsonl]"), "data.files is set but data.source=builtin"),
    ("run name with slash", lambda c: pretrain("run_name=a/b"), "run_name='a/b': must be a non-empty folder name"),
    ("bad block range", lambda c: pretrain("model.norm_overrides=[{layers: 'x', norm: {kind: rmsnorm}}]"),
     "model.norm_overrides[].layers='x': expected 'first-last'"),
    ("test split missing", lambda c: pretrain("eval.test=true"), "eval.test=true but the data has no test split"),
    ("overwrite and auto", lambda c: pretrain("train.overwrite=true", "train.resume=auto"),
     "train.overwrite=true and train.resume=auto: choose one"),
    ("allow changes of no key", lambda c: pretrain("train.resume_allow_changes=[model.norm.lamda]"),
     "train.resume_allow_changes: 'model.norm.lamda' is not a config key or section"),
    # command line and config files
    ("override without =", lambda c: pretrain("train.max_steps"), "override 'train.max_steps': expected dotted.key=value"),
    ("config not found", lambda c: ("train", ["--config", "llama_tiny_rmsnrom"]),
     "config 'llama_tiny_rmsnrom' not found (looked for ./llama_tiny_rmsnrom, ./configs/ and the shipped configs"),
    ("config not YAML", lambda c: ("train", ["--config", str(c["not_yaml"])]), "not valid YAML"),
    ("config a list", lambda c: ("train", ["--config", str(c["a_list"])]), "the top level must be a mapping of sections"),
    # settings that need the machine or the data
    ("bf16 on CPU", lambda c: tiny(c, "train.precision=bf16-pure"), "train.precision=bf16-pure on a machine without a CUDA GPU"),
    ("batch not divisible", lambda c: tiny(c, "train.global_batch_size=6"), "not divisible"),
    ("seq_len over positions", lambda c: tiny(c, "data.seq_len=100000"), "exceeds the model's"),
    ("data file missing", lambda c: tiny(c, f"data.files=[{c['tmp']}/gone.jsonl]"), "gone.jsonl': file not found"),
    ("data file empty", lambda c: tiny(c, f"data.files=[{c['empty']}]"), "is empty; remove it from data.files or fill it"),
    ("data field missing", lambda c: tiny(c, "data.text_field=body"), "no field 'body' (data.text_field)"),
    ("data extension", lambda c: tiny(c, f"data.files=[{c['csv']}]"), "has an unsupported extension"),
    ("offline data missing", lambda c: tiny(c, "eval.suite=small", f"eval.offline_data={c['tmp']}/nope"),
     "eval.offline_data=", ),
    # run folders and checkpoints
    ("out_dir is a file", lambda c: tiny(c, f"out_dir={c['a_file']}"), "is a file, not a folder"),
    ("out_dir under a file", lambda c: tiny(c, f"out_dir={c['a_file']}/sub"), "cannot create"),
    ("used run folder", lambda c: tiny(c, *c["used"]), "already holds a run (checkpoints/final"),
    ("changed setting on resume", lambda c: tiny(c, *c["used"], "train.max_steps=4", "train.resume=auto", "model.norm.lam=2"),
     "model.norm.lam 4.0 -> 2.0"),
    ("other norm on resume", lambda c: tiny(c, *c["used"], "train.max_steps=4", "train.resume=auto", "model.norm.kind=rmsnorm",
                                           "model.norm.variant=null", "model.norm.lam=null"), "model.norm.kind ibnorm -> rmsnorm"),
    ("resume from nowhere", lambda c: tiny(c, f"train.resume={c['tmp']}/nowhere"), "not a complete checkpoint"),
    ("truncated checkpoint", lambda c: tiny(c, "run_name=elsewhere", "train.max_steps=4", f"train.resume={c['truncated']}"),
     "model.safetensors is truncated"),
    ("nothing left to train", lambda c: tiny(c, *IBNORM, "run_name=elsewhere2", "train.max_steps=2",
                                                       f"train.resume={c['step_2']}"),
     "already at train.max_steps=2"),
    # the other scripts
    ("sweep: unknown axis", lambda c: ("sweep", ["--config", CONFIG, "--grid", "model.norm.lamb=2,3", "--out", f"{c['tmp']}/sw"]),
     "did you mean 'model.norm.lam'"),
    ("sweep: axis without values", lambda c: ("sweep", ["--config", CONFIG, "--grid", "train.seed=", "--out", f"{c['tmp']}/sw"]),
     "--grid 'train.seed=': expected dotted.key=v1,v2"),
    ("leaderboard: no checkpoint", lambda c: ("eval", ["--checkpoint", f"{c['tmp']}/none", "--suite", "small",
                                                             "--out", f"{c['tmp']}/ev"]), "no such directory"),
    ("leaderboard: zero limit", lambda c: ("eval", ["--checkpoint", c["final"], "--suite", "small", "--limit", "0",
                                                          "--out", f"{c['tmp']}/ev"]), "--limit=0: must be a positive integer"),
    ("leaderboard: unknown task", lambda c: ("eval", ["--checkpoint", c["final"], "--suite", "small", "--tasks", "hellaswg",
                                                            "--out", f"{c['tmp']}/ev"]), "hellaswg"),
    ("compare: no results", lambda c: ("compare", [str(c["tmp"]), "--out", f"{c['tmp']}/cmp"]), "none of the 1 folders holds a summary.json or a training run"),
]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, data_files):
    """Files the rows point at, and a used run folder (λ=4, checkpoints at steps 2 and 4)."""
    from ibnorm_llm.config import load_config
    from ibnorm_llm.train.trainer import train

    tmp = tmp_path_factory.mktemp("bad_inputs")
    base = overrides_for(tmp / "runs", data_files)
    (tmp / "not_yaml.yaml").write_text("train: [1, 2\n")
    (tmp / "a_list.yaml").write_text("- train\n- model\n")
    (tmp / "a_file").write_text("in the way")
    (tmp / "empty.jsonl").write_text("")
    (tmp / "data.csv").write_text("text\nhello\n")
    used = ["run_name=used", *IBNORM, "train.checkpoint_every=2"]
    first = train(load_config(None, [*base, *used, "train.max_steps=4"]))
    root = first.run_dir / "checkpoints"
    truncated = tmp / "truncated"
    import shutil

    shutil.copytree(root / "step_2", truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return {
        "tmp": tmp, "tiny": base, "not_yaml": tmp / "not_yaml.yaml", "a_list": tmp / "a_list.yaml",
        "a_file": tmp / "a_file", "empty": tmp / "empty.jsonl", "csv": tmp / "data.csv", "used": used,
        "truncated": truncated, "step_2": root / "step_2", "final": str(root / "final"),
    }


def _main(command: str):
    from ibnorm_llm.cli import run_command

    return lambda argv: run_command(command, argv)


def _check(code, err: str, expected: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    errors = [line for line in lines if re.match(r"^([a-z]+ )?error: ", line)]
    assert len(errors) == 1, lines
    assert expected in errors[0], (expected, errors[0])


def test_at_least_30_rows():
    assert len(ROWS) >= 30 and len({row[0] for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input(row, ctx, capsys, monkeypatch):
    _, make, expected = row
    script, args = make(ctx)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(ctx["tmp"])
    capsys.readouterr()
    try:
        code = _main(script)([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    _check(code, capsys.readouterr().err, expected)


AS_SUBPROCESS = ("unknown key", "config not YAML", "data file missing", "used run folder", "changed setting on resume",
                 "truncated checkpoint", "sweep: unknown axis", "leaderboard: no checkpoint", "compare: no results")
SUBPROCESS_ROWS = [row for row in ROWS if row[0] in AS_SUBPROCESS]


def test_subprocess_rows_exist():
    assert len(SUBPROCESS_ROWS) == len(AS_SUBPROCESS)


@pytest.mark.slow
@pytest.mark.parametrize("row", SUBPROCESS_ROWS, ids=[row[0] for row in SUBPROCESS_ROWS])
def test_bad_input_as_a_subprocess(row, ctx):
    _, make, expected = row
    script, args = make(ctx)
    result = subprocess.run([sys.executable, "-m", "ibnorm_llm", script, *map(str, args)], cwd=ctx["tmp"],
                            capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    _check(result.returncode, result.stderr, expected)
