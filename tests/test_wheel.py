"""The package works without its checkout: a built wheel, installed elsewhere, run from elsewhere.

The wheel is installed with ``pip install --target`` into a fresh folder that is first on
PYTHONPATH; the commands run in a folder outside the checkout. The dependencies (torch ...) come
from this environment; the checkout itself must not be used: the test checks where ibnorm_llm is
loaded from and that the checkout's scripts/ and eval/ cannot be imported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("wheel")
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, str(ROOT), "-w",
                    str(base / "dist")], check=True, capture_output=True, timeout=600)
    wheel = next((base / "dist").glob("ibnorm_llm-*.whl"))
    target = base / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    work = base / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1",
           "PYTHONNOUSERSITE": "1"}
    return {"target": target, "work": work, "env": env, "command": [str(target / "bin" / "ibnorm-llm")]}


def _run(installed, *args, timeout=600):
    result = subprocess.run([*installed["command"], *args], cwd=installed["work"], env=installed["env"],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (args, result.stderr[-3000:])
    return result


@pytest.mark.slow
def test_the_installed_wheel_trains_evaluates_and_runs_a_study_outside_the_checkout(installed):
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib.util, ibnorm_llm; print(ibnorm_llm.__file__); "
                               "print(importlib.util.find_spec('scripts'), importlib.util.find_spec('eval'))"],
        cwd=installed["work"], env=installed["env"], capture_output=True, text=True, check=True)
    location, specs = probe.stdout.splitlines()
    assert Path(location).is_relative_to(installed["target"]) and specs == "None None"
    assert str(installed["target"]) in _run(installed, "--version").stdout

    # A shipped preset by name, trained on the built-in corpus (its tokenizer is trained in ./tokenizers).
    _run(installed, "train", "--config", "llama_tiny_ibnorm_l.yaml", "train.max_steps=3", "logging.progress=false")
    final = installed["work"] / "runs" / "llama_tiny_ibnorm_l" / "checkpoints" / "final"
    assert (final / "model.safetensors").is_file()

    # The small suite on the shipped smoke data; the results go beside the run.
    # The seed, batch size and --no-perplexity reach lm-eval and the summary; the scores are printed as JSON.
    result = _run(installed, "eval", "--checkpoint", str(final), "--suite", "small", "--smoke", "--threads", "1",
                  "--seed", "7", "--batch-size", "2", "--no-perplexity")
    summary = json.loads((final.parent.parent / "eval_small" / "summary.json").read_text())
    assert set(summary["tasks"]) >= {"arc_easy", "piqa", "lambada_openai"}
    printed = json.loads(result.stdout[result.stdout.index("{"):])
    assert printed["scores"] == {task: round(score["value"], 4) for task, score in summary["tasks"].items()}
    assert summary["perplexity"] is None and "--no-perplexity" in summary["notes"][0]
    assert summary["seeds"] == dict.fromkeys(("random_seed", "numpy_random_seed", "torch_random_seed",
                                              "fewshot_random_seed"), 7)
    assert summary["batch_size"] == 2

    # A two-run study from a study file of the user's own; its trainings start through the package.
    (installed["work"] / "my_study.yaml").write_text(yaml.safe_dump({
        "name": "mine", "base": "llama_tiny_ibnorm_l.yaml",
        "overrides": {"train.max_steps": 2, "train.eval_every": 2, "train.checkpoint_every": 2,
                      "logging.progress": False, "logging.wandb": "off"},
        "arms": {"rmsnorm": {"model.norm.kind": "rmsnorm", "model.norm.variant": None, "model.norm.lam": None},
                 "ibnorm_l": {}},
        "baseline": "rmsnorm", "seeds": [0]}))
    result = _run(installed, "study", "--study", "my_study.yaml", "--out", "runs/mine", "--jobs", "2")
    report = (installed["work"] / "runs" / "mine" / "report.md").read_text()
    assert "ibnorm_l vs rmsnorm: not supported either way" in report
    log = (installed["work"] / "runs" / "mine" / "logs" / "mine_ibnorm_l_default_seed0.log").read_text()
    assert "-m ibnorm_llm train --config" in log.splitlines()[0]
    assert "[2/2]" in result.stderr
