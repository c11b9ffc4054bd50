"""The `ibnorm-llm` front door: the dispatcher, every command's help, the one error-to-exit-code mapping,
and the old script paths as shims (each run once, as a user's launch file runs it)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from ibnorm_llm.cli import COMMANDS, main, run_command
from ibnorm_llm.cli.errors import ERROR_KINDS, CommandError, call_reporting_errors, error_kind

ROOT = Path(__file__).resolve().parents[1]
SHIMS = {
    "scripts/pretrain.py": "train", "eval/leaderboard.py": "eval", "eval/compare.py": "compare",
    "scripts/study.py": "study", "scripts/sweep.py": "sweep", "scripts/demo.py": "demo",
    "scripts/analyze.py": "analyze", "scripts/export_hf.py": "export", "eval/prefetch.py": "prefetch",
    "scripts/train_tokenizer.py": "tokenizer", "scripts/ladder.py": "ladder",
    "scripts/health.py": "health",
}


def test_usage_lists_every_command_and_an_unknown_one_gets_a_suggestion(capsys):
    assert main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert all(f"  {name} " in usage for name in COMMANDS)
    assert main([]) == 2 and "usage: ibnorm-llm <command>" in capsys.readouterr().err
    assert main(["trian", "--config", "x"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: unknown command 'trian'; did you mean 'train'? commands: {', '.join(COMMANDS)}")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_a_usable_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_command(name, ["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: ibnorm-llm {name} ")
    assert f"ibnorm-llm {name}" in text.split("options:")[0].split("\n", 2)[2]  # the description shows an example


def test_a_bad_flag_is_argparses_exit_2_naming_it(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_command("eval", ["--checkpoint", "x", "--suite", "v3"])
    assert exit_.value.code == 2 and "argument --suite: invalid choice: 'v3'" in capsys.readouterr().err


def test_every_error_kind_names_an_existing_exception_class():
    classes = [getattr(importlib.import_module(kind.module), kind.name) for kind in ERROR_KINDS]
    for index, (kind, cls) in enumerate(zip(ERROR_KINDS, classes, strict=True)):
        assert issubclass(cls, Exception), kind
        # An instance maps to its own kind, unless an earlier kind is a base class of it (first match wins).
        earlier = tuple(classes[:index])
        assert error_kind(cls.__new__(cls)) is kind or issubclass(cls, earlier), kind


def test_errors_map_to_one_line_and_their_exit_status(capsys):
    from ibnorm_llm.config import ConfigError
    from ibnorm_llm.train.checkpoint import CheckpointWriteError
    from ibnorm_llm.train.run_folder import RunFolderError
    from ibnorm_llm.train.trainer import NonFiniteError

    def raising(err):
        def command():
            raise err
        return command

    expected = [(ConfigError("train.lr=0: must be > 0"), 2, "config error: train.lr=0: must be > 0"),
                (RunFolderError("runs/x is a file"), 2, "config error: runs/x is a file"),  # a ConfigError subclass
                (CommandError("give --out DIR"), 2, "error: give --out DIR"),
                (NonFiniteError("loss is nan at step 3"), 3, "error: loss is nan at step 3"),
                (CheckpointWriteError("disk full"), 1, "error: disk full")]
    for err, code, line in expected:
        assert call_reporting_errors(raising(err)) == code
        assert capsys.readouterr().err == line + "\n"
    with pytest.raises(KeyError):  # a bug keeps its traceback
        call_reporting_errors(raising(KeyError("bug")))


def test_a_config_error_is_reported_without_importing_torch():
    code = ("import sys\nfrom ibnorm_llm.cli import main\n"
            "status = main(['train', '--config', 'llama_tiny_ibnorm_l.yaml', 'train.max_stepz=3'])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(status)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("config error: unknown config key 'train.max_stepz'; "
                                     "did you mean 'train.max_steps'?")


@pytest.mark.parametrize("script", list(SHIMS))
def test_script_shim_runs_its_command(script):
    result = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {Path(script).name} ")
    module = importlib.import_module(f"ibnorm_llm.cli.{SHIMS[script]}")
    assert module.__doc__.splitlines()[0] in result.stdout


@pytest.mark.slow
def test_the_pretrain_shim_under_accelerate_launch_reaches_the_config_check():
    """`accelerate launch scripts/pretrain.py ...` is in users' launch files; its exit status passes through."""
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu", "scripts/pretrain.py",
         "--config", "llama_tiny_ibnorm_l.yaml", "train.max_stepz=3"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode != 0
    assert "config error: unknown config key 'train.max_stepz'" in result.stderr
