"""From a ladder's points to what the report shows: each arm's law, its held-out check, its predictions at
the targets and its crossover with the baseline."""

from __future__ import annotations

from dataclasses import dataclass

from ibnorm_llm.ladder.fit import FitError, ScalingLaw, fit_scaling_law
from ibnorm_llm.ladder.plan import LadderPlan, non_embedding_parameters, target_model
from ibnorm_llm.ladder.predict import (
    FLOPS_PER_PARAM_TOKEN,
    Crossover,
    HeldOut,
    Prediction,
    crossover,
    held_out,
    predict_pair,
)
from ibnorm_llm.ladder.runner import LadderPoint


@dataclass(frozen=True)
class Target:
    name: str
    n_params: dict[str, int]
    """arm -> non-embedding parameters of the preset with that arm's norm."""
    tokens: float
    """target_tokens_per_param x the baseline's N: every arm at the same tokens, as in the ladder."""

    def compute(self, arm: str) -> float:
        return FLOPS_PER_PARAM_TOKEN * self.n_params[arm] * self.tokens


@dataclass(frozen=True)
class LadderAnalysis:
    points: list[LadderPoint]
    laws: dict[str, ScalingLaw]
    """arm -> its law (arms whose points cannot be fitted are left out, see ``problems``)."""
    problems: dict[str, str]
    held_out: dict[str, HeldOut]
    targets: list[Target]
    predictions: dict[str, dict[str, Prediction]]
    """target -> arm -> prediction."""
    crossovers: dict[str, Crossover]
    """arm (not the baseline) -> its crossover with the baseline."""
    compute_range: tuple[float, float]


def fit_points(points: list[LadderPoint], arm: str) -> list[dict]:
    return [{**p.as_fit_point(), "size": p.size, "tokens_per_param": p.tokens_per_param}
            for p in points if p.arm == arm and p.loss is not None]


def analyse(plan: LadderPlan, points: list[LadderPoint], n_bootstrap: int = 200) -> LadderAnalysis:
    spec = plan.spec
    baseline = spec.study.baseline
    arms = list(plan.study.grids)
    laws, problems, checks = {}, {}, {}
    for arm in arms:
        mine = fit_points(points, arm)
        try:
            laws[arm] = fit_scaling_law(mine, n_bootstrap=n_bootstrap)
        except FitError as err:
            problems[arm] = str(err)
            continue
        checks[arm] = held_out(mine, n_bootstrap=n_bootstrap)
    targets = []
    for name in spec.targets:
        counts = {arm: non_embedding_parameters(target_model(spec, arm, name)) for arm in arms}
        targets.append(Target(name, counts, spec.target_tokens_per_param * counts[baseline]))
    predictions: dict[str, dict[str, Prediction]] = {}
    base_law = laws.get(baseline)
    for target in targets:
        predictions[target.name] = {
            arm: predict_pair(law, None if arm == baseline else base_law, target.n_params[arm], target.tokens,
                              target.n_params[baseline], target.tokens)
            for arm, law in laws.items()
        }
    fitted = [p for p in points if p.loss is not None]
    low = min((FLOPS_PER_PARAM_TOKEN * p.N * p.D for p in fitted), default=1.0)
    high = max([t.compute(baseline) for t in targets] + [FLOPS_PER_PARAM_TOKEN * p.N * p.D for p in fitted])
    crossovers = {arm: crossover(law, base_law, low, high) for arm, law in laws.items()
                  if arm != baseline and base_law is not None}
    return LadderAnalysis(points, laws, problems, checks, targets, predictions, crossovers, (low, high))
