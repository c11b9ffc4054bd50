"""The task suites as data: harness task -> shots, headline metric, chance level.

``v1``/``v2`` are the Open LLM Leaderboards; ``small`` is a suite whose tasks are above chance
at 60M-350M parameters (0-shot, cloze formulation: each answer is scored as a continuation of
the question), reporting acc, acc_norm and the bits per byte of the correct continuation.

Names, shot counts and metrics follow lm-evaluation-harness 0.4.13 (pinned in pyproject) and
the two leaderboards (reference.md, frameworks.md section 5). Every task is run with the shot
count written here, so a harness YAML without ``num_fewshot`` (hellaswag, arc, mmlu) still gets
the leaderboard's setting.

    spec = task_spec("hellaswag")      # TaskSpec(name='hellaswag', num_fewshot=10, metric='acc_norm', ...)
    [t.name for t in suite_tasks("v2")]
"""

from __future__ import annotations

from dataclasses import dataclass

from ibnorm_llm.config import EVAL_SUITES


class SuiteError(ValueError):
    """An unknown suite or task name; the message lists the valid ones."""


@dataclass(frozen=True)
class TaskSpec:
    """One leaderboard entry: a harness task or group and how the leaderboard scores it."""

    name: str
    """Harness task or group name (what lm-eval calls it)."""
    num_fewshot: int
    """Few-shot examples per prompt (the leaderboard's setting; applied to every subtask)."""
    metric: str
    """The harness metric the leaderboard reports for this task."""
    yaml_dir: str
    """Folder under ``lm_eval/tasks/`` holding this task's (and its subtasks') YAML files."""
    filter: str = "none"
    """The harness filter whose metric is reported (gsm8k: strict-match)."""
    generative: bool = False
    """Scored by generating text (gets the smoke generation length under ``smoke``)."""
    chance: float | None = None
    """The headline metric's expected value when guessing uniformly among the choices (None: not one number)."""
    continuation_bpb: bool = False
    """Also report the bits per byte of the correct continuation, from the harness's per-sample log-likelihoods."""

    @property
    def result_key(self) -> str:
        """The key of the headline metric in the harness's results, e.g. ``acc_norm,none``."""
        return f"{self.metric},{self.filter}"


SUITES: dict[str, tuple[TaskSpec, ...]] = {
    # Leaderboard I (harness group `openllm`); truthfulqa_mc2 by name, since the `truthfulqa`
    # tag would also pull mc1 and the generative variant.
    "v1": (
        TaskSpec("arc_challenge", 25, "acc_norm", "arc", chance=0.25),
        TaskSpec("hellaswag", 10, "acc_norm", "hellaswag", chance=0.25),
        TaskSpec("mmlu", 5, "acc", "mmlu/default", chance=0.25),
        TaskSpec("truthfulqa_mc2", 0, "acc", "truthfulqa"),  # the harness calls the mc2 score `acc`
        TaskSpec("winogrande", 5, "acc", "winogrande", chance=0.5),
        TaskSpec("gsm8k", 5, "exact_match", "gsm8k", filter="strict-match", generative=True),
    ),
    # Leaderboard II (harness group `leaderboard`), with the harness's own settings.
    "v2": (
        TaskSpec("leaderboard_ifeval", 0, "prompt_level_strict_acc", "leaderboard/ifeval", generative=True),
        TaskSpec("leaderboard_bbh", 3, "acc_norm", "leaderboard/bbh_mc"),
        TaskSpec("leaderboard_math_hard", 4, "exact_match", "leaderboard/math", generative=True),
        TaskSpec("leaderboard_gpqa", 0, "acc_norm", "leaderboard/gpqa", chance=0.25),
        TaskSpec("leaderboard_musr", 0, "acc_norm", "leaderboard/musr"),
        TaskSpec("leaderboard_mmlu_pro", 5, "acc", "leaderboard/mmlu_pro", chance=0.1),
    ),
    # Small models: tasks above chance at 60M-350M in the cloze formulation, 0-shot. acc_norm
    # (log-likelihood per character) where answers differ in length; lambada scores the last word.
    "small": (
        TaskSpec("arc_easy", 0, "acc_norm", "arc", chance=0.25, continuation_bpb=True),
        TaskSpec("arc_challenge", 0, "acc_norm", "arc", chance=0.25, continuation_bpb=True),
        TaskSpec("piqa", 0, "acc_norm", "piqa", chance=0.5, continuation_bpb=True),
        TaskSpec("sciq", 0, "acc", "sciq", chance=0.25, continuation_bpb=True),
        TaskSpec("lambada_openai", 0, "acc", "lambada", chance=0.0, continuation_bpb=True),
        TaskSpec("hellaswag", 0, "acc_norm", "hellaswag", chance=0.25, continuation_bpb=True),
        TaskSpec("winogrande", 0, "acc", "winogrande", chance=0.5, continuation_bpb=True),
    ),
}
"""Suite name -> its tasks, in leaderboard order."""

LEADERBOARDS = ("v1", "v2")
"""What ``all`` covers: both leaderboards (the small suite is asked for by name)."""

# Leaderboard entries by name (the small suite reuses some names with other shot counts).
_BY_NAME = {spec.name: spec for part in LEADERBOARDS for spec in SUITES[part]}


def suite_parts(suite: str) -> tuple[str, ...]:
    """The suites (keys of :data:`SUITES`) that ``small``, ``v1``, ``v2`` or ``all`` (v1 then v2) covers."""
    if suite == "all":
        return LEADERBOARDS
    if suite not in SUITES:
        raise SuiteError(f"unknown suite {suite!r}: choose one of {', '.join(EVAL_SUITES)}")
    return (suite,)


def suite_tasks(suite: str) -> tuple[TaskSpec, ...]:
    """The tasks of ``small``, ``v1``, ``v2`` or ``all`` (v1 then v2)."""
    return tuple(spec for part in suite_parts(suite) for spec in SUITES[part])


def task_names(suite: str) -> tuple[str, ...]:
    """The task names of ``small``, ``v1``, ``v2`` or ``all``, in suite order."""
    return tuple(spec.name for spec in suite_tasks(suite))


def task_spec(name: str) -> TaskSpec:
    """The leaderboard entry named ``name``; unknown names list the valid ones."""
    if name not in _BY_NAME:
        raise SuiteError(f"unknown leaderboard task {name!r}: choose from {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def select_tasks(suite: str, tasks: list[str] | tuple[str, ...] | None = None) -> tuple[TaskSpec, ...]:
    """The suite's tasks, or only ``tasks`` (which must belong to the suite) when given."""
    specs = suite_tasks(suite)
    if not tasks:
        return specs
    names = [spec.name for spec in specs]
    unknown = [t for t in tasks if t not in names]
    if unknown:
        raise SuiteError(
            f"task(s) {', '.join(unknown)} not in suite {suite!r}: choose from {', '.join(names)}"
        )
    return tuple(spec for spec in specs if spec.name in tasks)
