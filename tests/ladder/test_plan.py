"""The ladder's plan: which runs, how each budget branches from the shorter one, the learning rate per size,
and the resume each run gets from the state of its folder."""

from __future__ import annotations

import pytest
from ladder_helpers import ladder_dict

from ibnorm_llm.config import OptimConfig, wsd_decay_steps
from ibnorm_llm.ladder.plan import build_ladder_plan, plan_budget
from ibnorm_llm.ladder.spec import parse_ladder
from ibnorm_llm.study.plan import Point
from ibnorm_llm.train.checkpoint import COMPLETE, STATE_DIR


def plan_of(tmp_path, **changes):
    return build_ladder_plan(parse_ladder(ladder_dict(**changes), "ladder.yaml"), tmp_path / "out")


def saved_checkpoints(steps: int, every: int, keep_last: int) -> list[int]:
    """The step checkpoints a run keeps: every ``every`` steps before the end, the newest ``keep_last``."""
    return [s for s in range(every, steps, every)][-keep_last:]


@pytest.mark.parametrize("n_params, ratio, tokens_per_step, cap", [
    (6_352, 4, 1024, 1000), (58_360, 16, 1024, 1000), (302_433_280, 20, 131_072, 1000), (2_608, 0.25, 128, 1000),
])
def test_a_budget_decays_from_a_checkpoint_the_next_budget_can_branch_from(n_params, ratio, tokens_per_step, cap):
    optim = OptimConfig(schedule="wsd", decay_fraction=0.2, warmup_steps=1)
    budget = plan_budget(optim, n_params, ratio, tokens_per_step, cap)
    assert budget.steps - wsd_decay_steps(optim, budget.steps) == budget.decay_start
    assert budget.decay_start % budget.checkpoint_every == 0 and budget.checkpoint_every <= cap
    assert budget.decay_start in saved_checkpoints(budget.steps, budget.checkpoint_every, budget.keep_last)
    # Rounding the decay start to a checkpoint moves the tokens trained by a few steps at most, or 0.5 %.
    assert abs(budget.tokens - ratio * n_params) <= max(3 * tokens_per_step, 0.005 * ratio * n_params)


def test_plan_counts_parameters_orders_sizes_and_chains_budgets(tmp_path):
    plan = plan_of(tmp_path, sizes={**ladder_dict()["sizes"], "z": {"model.d_model": 8, "model.n_layers": 1,
                                                                    "model.n_heads": 2, "model.d_ff": 16}})
    assert plan.sizes == ("z", "a", "b", "c")  # by N, not file order
    assert plan.n("rmsnorm", "z") < plan.n("rmsnorm", "a") < plan.n("rmsnorm", "c")
    # IBNorm-L carries more norm parameters than RMSNorm at the same shape; both are counted.
    assert plan.n("ibnorm_l", "a") > plan.n("rmsnorm", "a")
    assert plan.tokens_per_step == 4 * 32
    chain = plan.chain("rmsnorm", "b", Point((("optim.lr", 0.01),)), 0)
    short, long = chain.runs
    assert short.parent is None and long.parent is short
    assert long.branch_point == short.run.run_dir / "checkpoints" / f"step_{short.budget.decay_start}"
    assert short.budget.steps < long.budget.steps
    # The stable phase once, plus the short budget's decay.
    assert chain.steps == long.budget.steps + short.budget.steps - short.budget.decay_start
    cfg = plan.config(long.run)
    assert cfg.optim.schedule == "wsd" and cfg.train.max_steps == long.budget.steps and cfg.eval.test
    assert cfg.data.test_fraction == 0.05 and cfg.train.seed == 0 and cfg.data.shuffle_seed == 0


def test_power_rule_tunes_the_smallest_size_and_transfers_the_rate(tmp_path):
    plan = plan_of(tmp_path, tune={"optim.lr": [0.003, 0.01]}, seeds=[0, 1])
    tuning = plan.tuning_chains()
    assert {(c.arm, c.size, c.point.as_dict()["optim.lr"], c.seed) for c in tuning} == {
        (arm, "a", lr, 0) for arm in ("rmsnorm", "ibnorm_l") for lr in (0.003, 0.01)}
    chosen = {arm: {"a": Point((("optim.lr", 0.01),))} for arm in ("rmsnorm", "ibnorm_l")}
    finals = plan.final_chains(chosen)
    # Every (arm, size, seed) but the tuning size at the first seed, which tuning already trained.
    assert sorted((c.arm, c.size, c.seed) for c in finals) == sorted(
        (arm, size, seed) for arm in ("rmsnorm", "ibnorm_l") for size in "abc" for seed in (0, 1)
        if (size, seed) != ("a", 0))
    lr = {(c.arm, c.size): c.point.as_dict()["optim.lr"] for c in finals}
    ratio = plan.n("rmsnorm", "c") / plan.n("rmsnorm", "a")
    assert lr[("rmsnorm", "c")] == pytest.approx(0.01 * ratio ** -0.333, rel=1e-3)
    assert lr[("rmsnorm", "a")] == 0.01 and lr[("ibnorm_l", "c")] == lr[("rmsnorm", "c")]


def test_tune_each_tunes_every_size(tmp_path):
    plan = plan_of(tmp_path, tune={"optim.lr": [0.003, 0.01]}, lr_rule={"kind": "tune_each"})
    assert len(plan.tuning_chains()) == 2 * 3 * 2
    chosen = {arm: {size: Point((("optim.lr", 0.003),)) for size in "abc"} for arm in ("rmsnorm", "ibnorm_l")}
    assert plan.final_chains(chosen) == []  # one seed: tuning trained every chain


def test_a_branch_resumes_its_own_checkpoint_or_starts_at_the_branch_point(tmp_path):
    plan = plan_of(tmp_path)
    first, branch = plan.chain("rmsnorm", "a", Point((("optim.lr", 0.01),)), 0).runs
    assert plan.run_now(first).overrides[-1] == "train.resume=auto"
    assert plan.run_now(branch).overrides[-1] == f"train.resume={branch.branch_point}"
    # A folder without a checkpoint (killed before its first): start again from the branch point.
    branch.run.run_dir.mkdir(parents=True)
    assert plan.run_now(branch).overrides[-2:] == (f"train.resume={branch.branch_point}", "train.overwrite=true")
    # With a checkpoint of its own it continues there.
    (branch.run.run_dir / "checkpoints" / "step_6" / STATE_DIR).mkdir(parents=True)
    (branch.run.run_dir / "checkpoints" / "step_6" / STATE_DIR / COMPLETE).write_text("done\n")
    assert plan.run_now(branch).overrides[-1] == "train.resume=auto"
