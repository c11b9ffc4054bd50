"""The Open LLM Leaderboard task suites as data: harness task -> shots, headline metric.

Names, shot counts and metrics follow lm-evaluation-harness 0.4.13 (pinned in pyproject) and
the two leaderboards (reference.md, frameworks.md section 5). Every task is run with the shot
count written here, so a harness YAML without ``num_fewshot`` (hellaswag, arc, mmlu) still gets
the leaderboard's setting.

    spec = task_spec("hellaswag")      # TaskSpec(name='hellaswag', num_fewshot=10, metric='acc_norm', ...)
    [t.name for t in suite_tasks("v2")]
"""

from __future__ import annotations

from dataclasses import dataclass


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

    @property
    def result_key(self) -> str:
        """The key of the headline metric in the harness's results, e.g. ``acc_norm,none``."""
        return f"{self.metric},{self.filter}"


SUITES: dict[str, tuple[TaskSpec, ...]] = {
    # Leaderboard I (harness group `openllm`); truthfulqa_mc2 by name, since the `truthfulqa`
    # tag would also pull mc1 and the generative variant.
    "v1": (
        TaskSpec("arc_challenge", 25, "acc_norm", "arc"),
        TaskSpec("hellaswag", 10, "acc_norm", "hellaswag"),
        TaskSpec("mmlu", 5, "acc", "mmlu/default"),
        TaskSpec("truthfulqa_mc2", 0, "acc", "truthfulqa"),  # the harness calls the mc2 score `acc`
        TaskSpec("winogrande", 5, "acc", "winogrande"),
        TaskSpec("gsm8k", 5, "exact_match", "gsm8k", filter="strict-match", generative=True),
    ),
    # Leaderboard II (harness group `leaderboard`), with the harness's own settings.
    "v2": (
        TaskSpec("leaderboard_ifeval", 0, "prompt_level_strict_acc", "leaderboard/ifeval", generative=True),
        TaskSpec("leaderboard_bbh", 3, "acc_norm", "leaderboard/bbh_mc"),
        TaskSpec("leaderboard_math_hard", 4, "exact_match", "leaderboard/math", generative=True),
        TaskSpec("leaderboard_gpqa", 0, "acc_norm", "leaderboard/gpqa"),
        TaskSpec("leaderboard_musr", 0, "acc_norm", "leaderboard/musr"),
        TaskSpec("leaderboard_mmlu_pro", 5, "acc", "leaderboard/mmlu_pro"),
    ),
}
"""Suite name -> its tasks, in leaderboard order."""

SUITE_CHOICES = ("v1", "v2", "all")

_BY_NAME = {spec.name: spec for specs in SUITES.values() for spec in specs}


def suite_parts(suite: str) -> tuple[str, ...]:
    """The leaderboards (keys of :data:`SUITES`) that ``v1``, ``v2`` or ``all`` (v1 then v2) covers."""
    if suite == "all":
        return tuple(SUITES)
    if suite not in SUITES:
        raise SuiteError(f"unknown suite {suite!r}: choose one of {', '.join(SUITE_CHOICES)}")
    return (suite,)


def suite_tasks(suite: str) -> tuple[TaskSpec, ...]:
    """The tasks of ``v1``, ``v2`` or ``all`` (v1 then v2)."""
    return tuple(spec for part in suite_parts(suite) for spec in SUITES[part])


def task_names(suite: str) -> tuple[str, ...]:
    """The task names of ``v1``, ``v2`` or ``all``, in leaderboard order."""
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
