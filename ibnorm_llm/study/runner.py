"""Running a study: tuning runs, selection on validation, final runs, the suite, the report.

Each training is ``<launcher> -m ibnorm_llm train --config <out>/configs/<run>.yaml`` in a subprocess
(the launcher is this Python, or ``--launcher`` e.g. ``accelerate launch --config_file launch/ddp.yaml``),
and evaluations and analyses are ``python -m ibnorm_llm eval|analyze ...``: the package's own entry
point, so a study runs the same from an installed wheel as from a checkout. A run
already finished is skipped and an interrupted one continues from its newest checkpoint
(``train.resume=auto``), so rerunning a study after a crash only does what is left.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ibnorm_llm.checkpoint import RUN_CONFIG_FILE
from ibnorm_llm.config import EvalConfig, save_config, yaml_load
from ibnorm_llm.config.eval_flags import default_eval_dir, eval_flags
from ibnorm_llm.config.resume import RESULT_NEUTRAL, config_differences, describe_differences
from ibnorm_llm.evaluation.comparison.summaries import SUMMARY_FILE
from ibnorm_llm.study.plan import Point, Run, StudyPlan
from ibnorm_llm.study.results import DIVERGED_FILE, RunResult, is_finished, read_result
from ibnorm_llm.study.selection import Choice, choose
from ibnorm_llm.study.spec import StudyError

ENTRY_POINT = ["-m", "ibnorm_llm"]
"""How a subprocess runs this package's command line (``python -m ibnorm_llm`` / ``accelerate launch -m ibnorm_llm``)."""
ANALYSIS_FILE = "analysis.json"
NONFINITE_EXIT = 3
"""``ibnorm-llm train``'s exit status for a non-finite loss: a diverged grid point, not a broken study."""


def training_command(run: Run, launcher: str | None) -> list[str]:
    prefix = shlex.split(launcher) if launcher else [sys.executable]
    return [*prefix, *ENTRY_POINT, "train", "--config", str(run.config_path)]


def eval_dir(run: Run, suite: str) -> Path:
    return default_eval_dir(run.run_dir / "checkpoints" / "final", suite)


def eval_command(run: Run, settings: EvalConfig) -> list[str]:
    return [sys.executable, *ENTRY_POINT, "eval", "--checkpoint", str(run.run_dir / "checkpoints" / "final"),
            "--out", str(eval_dir(run, settings.suite)), *eval_flags(settings)]


def analysis_dir(run: Run) -> Path:
    return run.run_dir / "analysis"


def analyze_command(plan: StudyPlan, run: Run) -> list[str]:
    """``ibnorm-llm analyze`` on the run's final checkpoint with the study's ``analyze`` settings."""
    settings = plan.spec.analyze or {}
    command = [sys.executable, *ENTRY_POINT, "analyze", "--checkpoint", str(run.run_dir / "checkpoints" / "final"),
               "--out", str(analysis_dir(run)), "--labels", run.name, "--threads", "1"]
    for key, value in settings.items():
        if key == "chance":
            command += [] if value else ["--no-chance"]
        else:
            command += [f"--{key.replace('_', '-')}", str(value)]
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
    suite: dict[str, dict[str, dict[int, Path]]]
    """suite -> arm -> seed -> eval result directory (empty without ``eval``)."""
    analyses: dict[str, dict[int, Path]] = field(default_factory=dict)
    """arm -> seed -> analysis.json of the final checkpoint (empty without ``analyze``)."""


def _log(message: str) -> None:
    sys.stderr.write(message + "\n")  # one write per line: parallel jobs' lines do not interleave
    sys.stderr.flush()


Execute = Callable[[list[str], Path], int]


def _execute(command: list[str], log: Path, threads: int | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(log, "a") as sink:
        sink.write(f"$ {shlex.join(command)}\n")
        sink.flush()
        try:
            # In the caller's directory, so relative paths in the study (data files, tokenizers) mean the same there.
            return subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=env).returncode
        except FileNotFoundError:
            raise StudyError(f"cannot start {command[0]!r}: no such program (check --launcher)") from None


class StudyRunner:
    """Runs the plan; ``execute(command, log_path) -> exit status`` is replaceable for tests.

    ``jobs`` trainings run at once, each with ``OMP_NUM_THREADS`` = cores // jobs: tiny models use
    two threads poorly, and a large design is many small runs. Stages stay in order (tuning,
    selection, runs that reuse a tuned point, later seeds, analysis); runs within a stage overlap.
    """

    def __init__(self, plan: StudyPlan, launcher: str | None = None, execute: Execute = _execute, jobs: int = 1):
        if jobs < 1:
            raise StudyError(f"--jobs {jobs}: must be at least 1")
        self.plan, self.launcher, self.jobs = plan, launcher, jobs
        if execute is _execute and jobs > 1:
            threads = max(1, (os.cpu_count() or 1) // jobs)
            execute = lambda command, log: _execute(command, log, threads=threads)  # noqa: E731
        self.execute = execute
        self._count = 0
        self._total = 0
        self._lock = threading.Lock()

    def _next_index(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def ensure(self, run: Run) -> RunResult:
        index = self._next_index()
        state = run_state(run)
        if state == "done":
            self._check_same_settings(run)
            _log(f"[{index}/{self._total}] {run.name}: finished earlier, skipped")
            return read_result(run.run_dir)
        save_config(self.plan.config(run), run.config_path)
        command = training_command(run, self.launcher)
        _log(f"[{index}/{self._total}] {run.name}: {'resuming' if state == 'partial' else 'training'}")
        started = time.perf_counter()
        log = self.plan.out / "logs" / f"{run.name}.log"
        code = self.execute(command, log)
        if code == NONFINITE_EXIT:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            (run.run_dir / DIVERGED_FILE).write_text(f"non-finite loss (exit status {code}); see {log}\n")
            _log(f"    {run.name} diverged (non-finite loss): this grid point is out of the selection")
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
            _log(f"    {run.name} done in {time.perf_counter() - started:.0f} s")
        return read_result(run.run_dir)

    def _check_same_settings(self, run: Run) -> None:
        """A finished run is reused only if it is the run planned now: the study file may have changed since."""
        saved = run.run_dir / "checkpoints" / "final" / RUN_CONFIG_FILE
        if not saved.is_file():
            return  # a diverged run has no final checkpoint; its DIVERGED_FILE records why it stopped
        changed = config_differences(yaml_load(saved.read_text()) or {}, self.plan.config(run), ignore=RESULT_NEUTRAL)
        if changed:
            raise StudyError(
                f"run {run.name} in {run.run_dir} finished with other settings than planned now "
                f"({describe_differences(changed)}): the study's settings changed since it ran. Use another --out "
                f"for the new settings, or move {run.run_dir} away to retrain it"
            )

    def _all(self, work: Callable[[Run], object], runs: list[Run]) -> list:
        """``work`` on every run, ``jobs`` at a time, results in order; the first failure is raised."""
        if self.jobs == 1 or len(runs) < 2:
            return [work(run) for run in runs]
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            return list(pool.map(work, runs))

    def evaluate(self, run: Run, settings: EvalConfig) -> Path:
        out = eval_dir(run, settings.suite)
        if (out / SUMMARY_FILE).is_file():
            return out
        log = self.plan.out / "logs" / f"{run.name}.eval_{settings.suite}.log"
        code = self.execute(eval_command(run, settings), log)
        if code != 0:
            raise StudyError(f"evaluating {run.name} failed (exit status {code}); see {log}")
        return out

    def analyze(self, run: Run) -> Path:
        out = analysis_dir(run) / ANALYSIS_FILE
        if out.is_file():
            return out
        log = self.plan.out / "logs" / f"{run.name}.analysis.log"
        code = self.execute(analyze_command(self.plan, run), log)
        if code != 0 or not out.is_file():
            raise StudyError(f"analysing {run.name} failed (exit status {code}); see {log}")
        return out

    def _seeded_arms(self, first_seed: dict[str, RunResult]) -> list[str]:
        """Arms that run the later seeds: all, or per anchor group the one best on validation at the first seed."""
        spec = self.plan.spec
        if spec.final_seeds == "all":
            return list(self.plan.grids)
        groups: dict[str, list[str]] = {}
        for arm in self.plan.grids:
            groups.setdefault(spec.anchor(arm), []).append(arm)
        chosen = []
        for members in groups.values():
            if len(members) == 1:
                chosen += members
                continue
            usable = [a for a in members if first_seed[a].validation_loss is not None]
            if usable:
                chosen.append(min(usable, key=lambda a: first_seed[a].validation_loss.value))
        return [arm for arm in self.plan.grids if arm in chosen]

    def run(self) -> StudyResults:
        plan = self.plan
        plan.out.mkdir(parents=True, exist_ok=True)
        tuning_runs = plan.tuning_runs()
        n_followers = sum(not plan.tunes_itself(arm) for arm in plan.grids)
        later_seeds = len(plan.spec.seeds) - 1
        self._total = len(tuning_runs) + n_followers + later_seeds * (
            len(plan.grids) if plan.spec.final_seeds == "all" else len(set(map(plan.spec.anchor, plan.grids))))
        tuning: dict[str, dict[Point, RunResult]] = {arm: {} for arm in plan.grids}
        for run, result in zip(tuning_runs, self._all(self.ensure, tuning_runs), strict=True):
            tuning[run.arm][run.point] = result
        choices = {arm: choose(arm, {p: r.validation_loss for p, r in results.items()})
                   for arm, results in tuning.items() if plan.tunes_itself(arm)}
        chosen = {arm: c.point for arm, c in choices.items()}
        follower_runs = plan.follower_runs(chosen)
        for run, result in zip(follower_runs, self._all(self.ensure, follower_runs), strict=True):
            tuning[run.arm][run.point] = result
            anchor = choices[plan.spec.anchor(run.arm)]
            measured = result.validation_loss
            choices[run.arm] = Choice(run.point, measured.value if measured else float("nan"),
                                      () if measured else (run.point,), anchor.at_edge)
        choices = {arm: choices[arm] for arm in plan.grids}
        _write_selection(plan, choices)
        first_seed = {arm: tuning[arm][plan.point_for(arm, chosen)] for arm in plan.grids}
        finals: dict[str, dict[int, RunResult]] = {arm: {plan.tuning_seed: first_seed[arm]} for arm in plan.grids}
        later = [run for run in plan.final_runs(chosen, self._seeded_arms(first_seed)) if run.seed != plan.tuning_seed]
        for run, result in zip(later, self._all(self.ensure, later), strict=True):
            finals[run.arm][run.seed] = result
        final_runs = [plan.run(arm, plan.point_for(arm, chosen), seed) for arm, runs in finals.items() for seed in runs
                      if runs[seed].diverged is None]
        suite: dict[str, dict[str, dict[int, Path]]] = {}
        for settings in plan.spec.evals:
            _log(f"eval {settings.suite} of {len(final_runs)} final checkpoints")
            evaluated = self._all(lambda run, settings=settings: self.evaluate(run, settings), final_runs)
            for run, path in zip(final_runs, evaluated, strict=True):
                suite.setdefault(settings.suite, {}).setdefault(run.arm, {})[run.seed] = path
        analyses: dict[str, dict[int, Path]] = {}
        if plan.spec.analyze is not None:
            _log(f"analysis of {len(final_runs)} final checkpoints")
            for run, path in zip(final_runs, self._all(self.analyze, final_runs), strict=True):
                analyses.setdefault(run.arm, {})[run.seed] = path
        return StudyResults(plan, tuning, choices, finals, suite, analyses)


def _write_selection(plan: StudyPlan, choices: dict[str, Choice]) -> None:
    """selection.json: each arm's chosen point and the validation loss it was chosen on."""
    record = {
        arm: {"point": choice.point.as_dict(), "selected_on": "validation", "validation_loss": choice.validation_loss,
              "tuned_on": plan.spec.anchor(arm), "seed": plan.tuning_seed, "failed_points": [p.as_dict() for p in choice.failed],
              "at_grid_edge": list(choice.at_edge)}
        for arm, choice in choices.items()
    }
    (plan.out / "selection.json").write_text(json.dumps(record, indent=2) + "\n")
