"""Running a ladder: the tuning chains, selection on validation, every other chain, the points.

It is the study's runner (:class:`ibnorm_llm.study.runner.StudyRunner`) with the ladder's stages: each
training goes through the study's ``ensure`` (a finished run is skipped, an interrupted one resumes,
a non-finite loss marks a diverged point, ``training_command`` starts it), and ``--jobs K`` runs K
chains at once, each training on cores / K threads. A chain's runs go in order, each branching from
the one before.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ibnorm_llm.ladder.plan import Chain, LadderPlan, LadderRun
from ibnorm_llm.study.plan import Point
from ibnorm_llm.study.results import DIVERGED_FILE, RunResult, read_result
from ibnorm_llm.study.runner import StudyRunner, run_state
from ibnorm_llm.study.selection import Choice, choose
from ibnorm_llm.train.metrics import read_metrics


@dataclass(frozen=True)
class LadderPoint:
    """One (arm, size, budget, seed) of the chosen settings: what the fit reads."""

    arm: str
    size: str
    tokens_per_param: float
    seed: int
    N: int
    """Non-embedding parameters."""
    N_total: int | None
    """Every parameter, embeddings included (from the run's run.json)."""
    D: int
    """Tokens trained (the run's own count; pad positions excluded)."""
    loss: float | None
    """Test-split loss of the final model (None: diverged)."""
    validation_loss: float | None
    point: Point
    run: str

    def as_fit_point(self) -> dict:
        return {"N": self.N, "D": self.D, "loss": self.loss, "seed": self.seed}


@dataclass
class LadderResults:
    plan: LadderPlan
    tuning: dict[str, dict[str, dict[Point, list[RunResult]]]]
    """arm -> size -> grid point -> one result per budget (the tuning seed)."""
    choices: dict[str, dict[str, Choice]]
    """arm -> tuning size -> the chosen point (validation loss at the largest budget)."""
    points: list[LadderPoint]


def _tokens(result: RunResult, fallback: int) -> int:
    """The tokens the run counted (labels that are not padding), from its last metrics record."""
    metrics = result.run_dir / "metrics.jsonl"
    records = read_metrics(metrics) if metrics.is_file() else []
    tokens = records[-1].get("tokens") if records else None
    return int(tokens) if isinstance(tokens, (int, float)) and tokens > 0 else fallback


def _total_parameters(run_dir: Path) -> int | None:
    record = run_dir / "run.json"
    if not record.is_file():
        return None
    value = json.loads(record.read_text()).get("n_params")
    return int(value) if isinstance(value, int) else None


class LadderRunner(StudyRunner):
    """Runs a :class:`LadderPlan`; ``execute(command, log_path) -> exit status`` is replaceable for tests."""

    def __init__(self, plan: LadderPlan, launcher: str | None = None, execute=None, jobs: int = 1):
        # The study runner's own executor (OMP threads = cores / jobs) unless a test gives one.
        kwargs = {} if execute is None else {"execute": execute}
        super().__init__(plan, launcher=launcher, jobs=jobs, **kwargs)
        self.ladder = plan

    def train_chain(self, chain: Chain) -> list[RunResult]:
        """Every budget of ``chain`` in order; after a diverged run the longer budgets are marked diverged
        too (they would branch from it), so the selection and a rerun see them as such."""
        results: list[RunResult] = []
        for run in chain.runs:
            if results and results[-1].diverged is not None:
                run.run.run_dir.mkdir(parents=True, exist_ok=True)
                (run.run.run_dir / DIVERGED_FILE).write_text(
                    f"not trained: the run it branches from, {run.parent.run.name}, diverged\n")
                results.append(read_result(run.run.run_dir))
                continue
            results.append(self.ensure(self.ladder.run_now(run)))
        return results

    def _chains(self, chains: list[Chain]) -> list[list[RunResult]]:
        # Longest chains first: with several jobs, the last to finish is then a short one.
        order = sorted(range(len(chains)), key=lambda i: -chains[i].steps)
        done = self._all(self.train_chain, [chains[i] for i in order])
        results: list[list[RunResult]] = [[] for _ in chains]
        for i, result in zip(order, done, strict=True):
            results[i] = result
        return results

    def run(self) -> LadderResults:
        plan = self.ladder
        plan.out.mkdir(parents=True, exist_ok=True)
        tuning_chains = plan.tuning_chains()
        n_final = len(plan.spec.study.seeds) * len(plan.study.grids) * len(plan.sizes) - len(plan.study.grids) * len(
            plan.tuning_sizes())
        self._total = (len(tuning_chains) + n_final) * len(plan.spec.budgets)
        tuning: dict[str, dict[str, dict[Point, list[RunResult]]]] = {arm: {} for arm in plan.study.grids}
        for chain, results in zip(tuning_chains, self._chains(tuning_chains), strict=True):
            tuning[chain.arm].setdefault(chain.size, {})[chain.point] = results
        choices = {arm: {size: choose(f"{arm} at size {size}", {p: r[-1].validation_loss for p, r in by_point.items()})
                         for size, by_point in sizes.items()} for arm, sizes in tuning.items()}
        _write_selection(plan, choices)
        chosen = {arm: {size: c.point for size, c in by_size.items()} for arm, by_size in choices.items()}
        # The chosen point's tuning chains are points of the ladder; every other chain trains now.
        first = [plan.chain(arm, size, chosen[arm][size], plan.tuning_seed)
                 for arm in plan.study.grids for size in plan.tuning_sizes()]
        final_chains = plan.final_chains(chosen)
        chains = [*first, *final_chains]
        finished = [tuning[c.arm][c.size][c.point] for c in first] + self._chains(final_chains)
        points = [_point(plan, chain, run, result) for chain, results in zip(chains, finished, strict=True)
                  for run, result in zip(chain.runs, results, strict=True)]
        return LadderResults(plan, tuning, choices, points)


def _point(plan: LadderPlan, chain: Chain, run: LadderRun, result: RunResult) -> LadderPoint:
    test = result.test_loss
    if test is not None and test.split != "test":
        raise ValueError(f"{run.run.name}: a {test.split} number was about to be fitted as a test number")
    loss = test.value if test is not None and result.diverged is None and math.isfinite(test.value) else None
    validation = result.validation_loss.value if result.validation_loss is not None else None
    return LadderPoint(
        arm=chain.arm, size=chain.size, tokens_per_param=run.budget.tokens_per_param, seed=chain.seed,
        N=plan.n(chain.arm, chain.size), N_total=_total_parameters(result.run_dir),
        D=_tokens(result, run.budget.tokens), loss=loss, validation_loss=validation, point=chain.point,
        run=run.run.name,
    )


def _write_selection(plan: LadderPlan, choices: dict[str, dict[str, Choice]]) -> None:
    """selection.json: per arm and tuning size, the chosen point and the validation loss it was chosen on."""
    record = {
        arm: {size: {"point": c.point.as_dict(), "selected_on": "validation", "budget": plan.spec.budgets[-1],
                     "validation_loss": c.validation_loss, "seed": plan.tuning_seed,
                     "failed_points": [p.as_dict() for p in c.failed], "at_grid_edge": list(c.at_edge),
                     "lr_rule": plan.spec.lr_rule.describe()}
              for size, c in by_size.items()}
        for arm, by_size in choices.items()
    }
    (plan.out / "selection.json").write_text(json.dumps(record, indent=2) + "\n")


def chain_states(chain: Chain) -> list[str]:
    """done / partial / todo per run of ``chain`` (for --dry-run)."""
    return [run_state(run.run) for run in chain.runs]
