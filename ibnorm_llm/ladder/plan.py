"""The runs of a ladder: for every arm, size and seed one chain of runs, one per budget, on the wsd schedule.

A chain trains its stable phase once. The shortest budget's run trains from scratch and saves a
checkpoint at its decay start; each longer budget's run resumes the previous run's checkpoint there
with its own ``train.max_steps`` (a wsd branch, docs/training.md), so it runs the stable steps in
between and its own decay: exactly the run straight to that budget, for the price of the decays.

Budgets are tokens per non-embedding parameter N (the baseline arm's N at that size, so every arm
trains the same tokens at a size). A budget's steps are rounded so that its decay starts on a
checkpoint: ``k`` checkpoints (every ``a / k`` steps, at most the base's ``train.checkpoint_every``)
land exactly on the decay start ``a``. The tokens actually trained are what the fit uses.

Tuning reuses the study's run plan (:func:`ibnorm_llm.study.plan.build_plan`: the grid per arm,
grid keys a norm does not take skipped, the test split and ``eval.test``); the learning rate per
size follows the ladder's ``lr_rule``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ibnorm_llm.config import ConfigError, ModelConfig, OptimConfig, RunConfig, load_config, wsd_decay_steps
from ibnorm_llm.ladder.spec import LadderError, LadderSpec
from ibnorm_llm.models import build_model
from ibnorm_llm.models.presets import PRESETS
from ibnorm_llm.study.plan import Point, Run, StudyPlan, build_plan, dotted
from ibnorm_llm.train import checkpoint as ckpt
from ibnorm_llm.train.batching import plan_batches

_SHAPE_KEYS = ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff")
_PROBE_VOCAB = 64
"""The vocabulary the parameter count builds with: embeddings are left out of N, so any size does."""


def non_embedding_parameters(model_cfg: ModelConfig) -> int:
    """Parameters outside the token/position embeddings and the output head (Kaplan et al.'s N).

    Built on the meta device: the structure without memory, so a 1B preset counts in a moment."""
    with torch.device("meta"):
        model = build_model(model_cfg, _PROBE_VOCAB)
    excluded = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    head = model.get_output_embeddings()
    if head is not None:
        excluded |= {id(p) for p in head.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in excluded)


@dataclass(frozen=True)
class Budget:
    tokens_per_param: float
    """The file's budget; the run trains ``tokens``, the nearest that puts the decay start on a checkpoint."""
    steps: int
    decay_start: int
    """The step the next budget's run branches from (its checkpoint is kept)."""
    checkpoint_every: int
    keep_last: int
    tokens: int
    """steps x tokens per step (pad positions included; the fit reads the tokens the run counted)."""


def plan_budget(optim: OptimConfig, n_params: int, ratio: float, tokens_per_step: int, checkpoint_cap: int) -> Budget:
    """The steps of a ``ratio`` tokens-per-parameter run whose decay starts on one of its checkpoints."""
    target = max(2, round(ratio * n_params / tokens_per_step))
    start_target = target - wsd_decay_steps(optim, target)
    k = max(1, math.ceil(start_target / checkpoint_cap)) if checkpoint_cap > 0 else 1
    start = k * max(1, round(start_target / k))
    # The decay start s - decay(s) grows by 0 or 1 per step, so some s lands exactly on ``start``.
    steps = start + 1
    while steps - wsd_decay_steps(optim, steps) < start:
        steps += 1
    if steps - wsd_decay_steps(optim, steps) != start:
        raise LadderError(f"optim.decay_fraction={optim.decay_fraction}: no run length puts the decay start at step "
                          f"{start}; use a decay_fraction below 1 (e.g. 0.2)")
    every = start // k
    after = math.ceil(steps / every) - 1 - k  # step checkpoints between the decay start and the end
    return Budget(ratio, steps, start, every, after + 1, steps * tokens_per_step)


@dataclass(frozen=True)
class LadderRun:
    run: Run
    """The study's run record: name, overrides (without train.resume), folder."""
    size: str
    budget: Budget
    parent: LadderRun | None
    """The shorter budget's run it branches from (None: the chain's first run, trained from scratch)."""

    @property
    def branch_point(self) -> Path | None:
        if self.parent is None:
            return None
        return ckpt.checkpoints_root(self.parent.run.run_dir) / f"step_{self.parent.budget.decay_start}"


@dataclass(frozen=True)
class Chain:
    arm: str
    size: str
    point: Point
    seed: int
    runs: tuple[LadderRun, ...]
    """One per budget, shortest first; each branches from the one before."""

    @property
    def steps(self) -> int:
        """Steps trained by the whole chain: the longest stable phase once, plus every decay."""
        return self.runs[-1].budget.steps + sum(r.budget.steps - r.budget.decay_start for r in self.runs[:-1])


@dataclass(frozen=True)
class LadderPlan:
    spec: LadderSpec
    out: Path
    study: StudyPlan
    """The study's plan of the same arms at the base size: grids, skipped keys, common overrides."""
    sizes: tuple[str, ...]
    """Smallest first (by the baseline's N)."""
    params: dict[tuple[str, str], int]
    """(arm, size) -> non-embedding parameters N."""
    budgets: dict[str, tuple[Budget, ...]]
    """size -> its budgets, shortest first (the same for every arm)."""
    tokens_per_step: int
    common: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def tuning_seed(self) -> int:
        return self.spec.study.seeds[0]

    @property
    def smallest(self) -> str:
        return self.sizes[0]

    def config(self, run: Run) -> RunConfig:
        return load_config(self.spec.study.base, list(run.overrides))

    def n(self, arm: str, size: str) -> int:
        return self.params[(arm, size)]

    def chain(self, arm: str, size: str, point: Point, seed: int) -> Chain:
        spec = self.spec.study
        runs: list[LadderRun] = []
        for budget in self.budgets[size]:
            name = f"{spec.name}_{arm}_{size}_{point.label}_tpp{budget.tokens_per_param:g}_seed{seed}"
            overrides = (
                *dotted(spec.overrides), *dotted(spec.arms[arm]), *dotted(self.spec.sizes[size]),
                *dotted(point.as_dict()), *self.common,
                f"train.max_steps={budget.steps}", f"train.checkpoint_every={budget.checkpoint_every}",
                f"train.keep_last={budget.keep_last}", f"train.seed={seed}", f"data.shuffle_seed={seed}",
                f"run_name={name}", f"out_dir={self.out}",
            )
            runs.append(LadderRun(Run(arm, point, seed, name, overrides, self.out), size, budget,
                                  runs[-1] if runs else None))
        return Chain(arm, size, point, seed, tuple(runs))

    def tuning_sizes(self) -> tuple[str, ...]:
        return self.sizes if self.spec.lr_rule.kind == "tune_each" else (self.smallest,)

    def tuning_chains(self) -> list[Chain]:
        """Every grid point of every arm at the tuning size(s), first seed."""
        return [self.chain(arm, size, point, self.tuning_seed) for size in self.tuning_sizes()
                for arm, grid in self.study.grids.items() for point in grid.points]

    def point_at(self, arm: str, size: str, chosen: dict[str, Point]) -> Point:
        """``arm``'s point at ``size``: chosen there (tune_each), or the smallest size's, transferred by the power rule."""
        rule = self.spec.lr_rule
        if rule.kind == "tune_each" or size == self.smallest:
            return chosen[size]
        base = self.spec.study.baseline
        ratio = (self.n(base, size) / self.n(base, self.smallest)) ** rule.exponent
        values = tuple((k, float(f"{v * ratio:.4g}") if k == rule.key else v) for k, v in chosen[self.smallest].values)
        return Point(values)

    def final_chains(self, chosen: dict[str, dict[str, Point]]) -> list[Chain]:
        """Each arm's point at every size and seed, except the chains tuning already ran."""
        tuned = set(self.tuning_sizes())
        return [self.chain(arm, size, self.point_at(arm, size, chosen[arm]), seed)
                for seed in self.spec.study.seeds for arm in self.study.grids for size in self.sizes
                if not (seed == self.tuning_seed and size in tuned)]

    def run_now(self, run: LadderRun) -> Run:
        """``run`` with the ``train.resume`` its folder calls for: its own newest checkpoint when it has one
        (an interrupted run continues), else the branch point (a folder without a checkpoint starts over)."""
        base = run.run
        if run.parent is None or ckpt.candidates(base.run_dir):
            extra: tuple[str, ...] = ("train.resume=auto",)
        else:
            extra = (f"train.resume={run.branch_point}",)
            if base.run_dir.exists():
                extra += ("train.overwrite=true",)
        return Run(base.arm, base.point, base.seed, base.name, (*base.overrides, *extra), base.out)


def _probe(spec: LadderSpec, arm: str, size: str, extra: list[str]) -> RunConfig:
    study = spec.study
    try:
        return load_config(study.base, [*dotted(study.overrides), *dotted(study.arms[arm]),
                                        *dotted(spec.sizes[size]), *extra])
    except ConfigError as err:
        raise LadderError(f"{spec.source}: sizes.{size} with arms.{arm}: {err}") from None


def _count(spec: LadderSpec, cfg: RunConfig, where: str) -> int:
    try:
        return non_embedding_parameters(cfg.model)
    except (ConfigError, ValueError, RuntimeError) as err:
        raise LadderError(f"{spec.source}: {where} does not build ({err}); fix its shape (model.n_heads must divide "
                          "model.d_model, every value a positive integer)") from None


def target_model(spec: LadderSpec, arm: str, preset: str) -> ModelConfig:
    """The model of target ``preset`` with ``arm``'s norm: the ladder's settings, the preset's shape."""
    study = spec.study
    shape = {f"model.{key}": None for key in _SHAPE_KEYS}
    overrides = [*dotted(study.overrides), *dotted(study.arms[arm]), *dotted(shape), f"model.preset={preset}"]
    return load_config(study.base, overrides).model


def build_ladder_plan(spec: LadderSpec, out: str | Path) -> LadderPlan:
    """Count every size's parameters, plan every budget's steps and check every run's config before anything runs."""
    out = Path(out).resolve()
    study_plan = build_plan(spec.study, out)
    notes = list(study_plan.notes)
    common = [o for o in study_plan.common if not o.startswith("train.resume=")]
    base = spec.study.baseline
    params = {}
    for size in spec.sizes:
        for arm in spec.study.arms:
            params[(arm, size)] = _count(spec, _probe(spec, arm, size, common), f"sizes.{size} (arm {arm})")
    sizes = tuple(sorted(spec.sizes, key=lambda s: params[(base, s)]))
    for small, large in zip(sizes, sizes[1:], strict=False):
        if params[(base, small)] == params[(base, large)]:
            raise LadderError(f"{spec.source}: sizes.{small} and sizes.{large} have the same {params[(base, small)]:,} "
                              "non-embedding parameters; give each size its own shape")
    probe = _probe(spec, base, sizes[0], common)
    if probe.train.global_batch_size is None and probe.train.global_batch_tokens is None:
        raise LadderError(f"{spec.source}: set train.global_batch_size (or train.global_batch_tokens) in overrides: a "
                          "budget's steps follow from the tokens per step, which must not depend on the launcher")
    try:
        tokens_per_step = plan_batches(probe.train, probe.data.seq_len, 1).tokens_per_step
    except ConfigError as err:
        raise LadderError(f"{spec.source}: overrides: {err}") from None
    budgets = {}
    for size in sizes:
        planned = [plan_budget(probe.optim, params[(base, size)], ratio, tokens_per_step, probe.train.checkpoint_every)
                   for ratio in spec.budgets]
        for short, long in zip(planned, planned[1:], strict=False):
            if long.decay_start <= short.decay_start:
                raise LadderError(f"{spec.source}: at sizes.{size} ({params[(base, size)]:,} parameters, "
                                  f"{tokens_per_step} tokens per step) budgets {short.tokens_per_param:g} and "
                                  f"{long.tokens_per_param:g} round to the same steps; spread the budgets or shrink "
                                  "train.global_batch_size")
        # The longest run branches to nothing: it keeps the base config's checkpoint cadence.
        last = planned[-1]
        planned[-1] = Budget(last.tokens_per_param, last.steps, last.decay_start, probe.train.checkpoint_every,
                             probe.train.keep_last, last.tokens)
        budgets[size] = tuple(planned)
    plan = LadderPlan(spec, out, study_plan, sizes, params, budgets, tokens_per_step, tuple(common), tuple(notes))
    first = {arm: grid.points[0] for arm, grid in study_plan.grids.items()}
    for arm in spec.study.arms:
        for size in sizes:
            for run in plan.chain(arm, size, first[arm], plan.tuning_seed).runs:
                try:
                    plan.config(run.run)
                except ConfigError as err:
                    raise LadderError(f"{spec.source}: arm {arm} at sizes.{size}, budget {run.budget.tokens_per_param:g} "
                                      f"({run.budget.steps} steps): {err}") from None
    for target in spec.targets:
        try:
            target_cfg = target_model(spec, base, target)
        except ConfigError as err:
            raise LadderError(f"{spec.source}: targets: {target}: {err}") from None
        if _family(target_cfg) != _family(probe.model):
            raise LadderError(f"{spec.source}: targets: {target} is a {_family(target_cfg)} model but the ladder trains "
                              f"{_family(probe.model)} models; name {_family(probe.model)} presets")
    return plan


def _family(model_cfg: ModelConfig) -> str:
    return PRESETS[model_cfg.preset].family


def describe_budgets(plan: LadderPlan) -> list[str]:
    """One line per size: N per arm and each budget's steps and tokens."""
    lines = []
    for size in plan.sizes:
        counts = sorted({plan.n(arm, size) for arm in plan.spec.study.arms})
        n = f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}..{counts[-1]:,}"
        budgets = ", ".join(f"{b.tokens_per_param:g}/param: {b.steps} steps ({b.tokens:,} tokens)"
                            for b in plan.budgets[size])
        lines.append(f"size {size}: N = {n} non-embedding parameters; {budgets}")
    return lines
