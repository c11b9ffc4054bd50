"""Running a study: tuning runs, selection on validation, final runs, the suite, the report.

Each training is ``<launcher> scripts/pretrain.py --config <out>/configs/<run>.yaml`` in a
subprocess (``--launcher`` e.g. ``accelerate launch --config_file launch/ddp.yaml``); a run
already finished is skipped and an interrupted one continues from its newest checkpoint
(``train.resume=auto``), so rerunning a study after a crash only does what is left.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ibnorm_llm.config import save_config
from ibnorm_llm.study.plan import Point, Run, StudyPlan
from ibnorm_llm.study.results import DIVERGED_FILE, RunResult, is_finished, read_result
from ibnorm_llm.study.selection import Choice, choose
from ibnorm_llm.study.spec import StudyError

ROOT = Path(__file__).resolve().parents[2]
PRETRAIN = ROOT / "scripts" / "pretrain.py"
LEADERBOARD = ROOT / "eval" / "leaderboard.py"
NONFINITE_EXIT = 3
"""scripts/pretrain.py's exit status for a non-finite loss: a diverged grid point, not a broken study."""


def training_command(run: Run, launcher: str | None) -> list[str]:
    prefix = shlex.split(launcher) if launcher else [sys.executable]
    return [*prefix, str(PRETRAIN), "--config", str(run.config_path)]


def eval_dir(run: Run, suite: str) -> Path:
    return run.run_dir / f"eval_{suite}"


def eval_command(plan: StudyPlan, run: Run) -> list[str]:
    ev = plan.spec.eval
    command = [sys.executable, str(LEADERBOARD), "--checkpoint", str(run.run_dir / "checkpoints" / "final"),
               "--suite", ev.suite, "--out", str(eval_dir(run, ev.suite)), "--batch-size", str(ev.batch_size)]
    if ev.limit is not None:
        command += ["--limit", str(ev.limit)]
    if ev.offline_data is not None:
        command += ["--offline-data", str(Path(ev.offline_data).resolve())]
    if ev.smoke:
        command.append("--smoke")
    return command


def run_state(run: Run) -> str:
    """done, partial (a folder without a finished run: it resumes) or todo."""
    if is_finished(run.run_dir):
        return "done"
    return "partial" if run.run_dir.exists() else "todo"


@dataclass
class StudyResults:
    plan: StudyPlan
    tuning: dict[str, dict[Point, RunResult]]
    choices: dict[str, Choice]
    finals: dict[str, dict[int, RunResult]]
    """arm -> seed -> the chosen point's run."""
    suite: dict[str, dict[int, Path]]
    """arm -> seed -> eval result directory (empty without eval.suite)."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


Execute = Callable[[list[str], Path], int]


def _execute(command: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as sink:
        sink.write(f"$ {shlex.join(command)}\n")
        sink.flush()
        try:
            # In the caller's directory, so relative paths in the study (data files, tokenizers) mean the same there.
            return subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT).returncode
        except FileNotFoundError:
            raise StudyError(f"cannot start {command[0]!r}: no such program (check --launcher)") from None


class StudyRunner:
    """Runs the plan; ``execute(command, log_path) -> exit status`` is replaceable for tests."""

    def __init__(self, plan: StudyPlan, launcher: str | None = None, execute: Execute = _execute):
        self.plan, self.launcher, self.execute = plan, launcher, execute

    def ensure(self, run: Run, index: int, total: int) -> RunResult:
        state = run_state(run)
        if state == "done":
            _log(f"[{index}/{total}] {run.name}: finished earlier, skipped")
            return read_result(run.run_dir)
        save_config(self.plan.config(run), run.config_path)
        command = training_command(run, self.launcher)
        _log(f"[{index}/{total}] {run.name}: {'resuming' if state == 'partial' else 'training'}")
        started = time.perf_counter()
        log = self.plan.out / "logs" / f"{run.name}.log"
        code = self.execute(command, log)
        if code == NONFINITE_EXIT:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            (run.run_dir / DIVERGED_FILE).write_text(f"non-finite loss (exit status {code}); see {log}\n")
            _log("    diverged (non-finite loss): this grid point is out of the selection")
        elif code == 0 and not is_finished(run.run_dir):
            raise StudyError(
                f"run {run.name} ended without the test split's numbers in its last metrics record ({log}): its "
                f"folder {run.run_dir} holds a finished run of other settings; move it away and rerun"
            )
        elif code != 0:
            raise StudyError(
                f"run {run.name} failed (exit status {code}); its output is in {log}. Fix the cause and rerun the "
                f"same command: finished runs are skipped and this one resumes from its last checkpoint"
            )
        else:
            _log(f"    done in {time.perf_counter() - started:.0f} s")
        return read_result(run.run_dir)

    def evaluate(self, run: Run) -> Path:
        out = eval_dir(run, self.plan.spec.eval.suite)
        if (out / "summary.json").is_file():
            return out
        log = self.plan.out / "logs" / f"{run.name}.eval.log"
        code = self.execute(eval_command(self.plan, run), log)
        if code != 0:
            raise StudyError(f"evaluating {run.name} failed (exit status {code}); see {log}")
        return out

    def run(self) -> StudyResults:
        plan = self.plan
        plan.out.mkdir(parents=True, exist_ok=True)
        tuning_runs = plan.tuning_runs()
        total = len(tuning_runs) + sum(len(plan.spec.seeds) - 1 for _ in plan.grids)
        tuning: dict[str, dict[Point, RunResult]] = {arm: {} for arm in plan.grids}
        for i, run in enumerate(tuning_runs, 1):
            tuning[run.arm][run.point] = self.ensure(run, i, total)
        choices = {arm: choose(arm, {p: r.validation_loss for p, r in results.items()})
                   for arm, results in tuning.items()}
        _write_selection(plan, choices)
        finals: dict[str, dict[int, RunResult]] = {arm: {} for arm in plan.grids}
        index = len(tuning_runs)
        for run in plan.final_runs({arm: c.point for arm, c in choices.items()}):
            if run.seed == plan.tuning_seed:
                finals[run.arm][run.seed] = tuning[run.arm][run.point]
                continue
            index += 1
            finals[run.arm][run.seed] = self.ensure(run, index, total)
        suite: dict[str, dict[int, Path]] = {}
        if plan.spec.eval.suite != "none":
            for run in plan.final_runs({arm: c.point for arm, c in choices.items()}):
                if finals[run.arm][run.seed].diverged is None:
                    _log(f"eval {plan.spec.eval.suite}: {run.name}")
                    suite.setdefault(run.arm, {})[run.seed] = self.evaluate(run)
        return StudyResults(plan, tuning, choices, finals, suite)


def _write_selection(plan: StudyPlan, choices: dict[str, Choice]) -> None:
    """selection.json: each arm's chosen point and the validation loss it was chosen on."""
    record = {
        arm: {"point": choice.point.as_dict(), "selected_on": "validation", "validation_loss": choice.validation_loss,
              "seed": plan.tuning_seed, "failed_points": [p.as_dict() for p in choice.failed],
              "at_grid_edge": list(choice.at_edge)}
        for arm, choice in choices.items()
    }
    (plan.out / "selection.json").write_text(json.dumps(record, indent=2) + "\n")
