"""The ladder's runner with a stand-in trainer: the stages, the branch each run resumes, a diverged chain, the
selection on validation, the points, and a rerun that trains nothing."""

from __future__ import annotations

import json

from ladder_helpers import FakeTrainer, ladder_dict

from ibnorm_llm.ladder.plan import build_ladder_plan
from ibnorm_llm.ladder.runner import LadderRunner
from ibnorm_llm.ladder.spec import parse_ladder


def test_runner_tunes_branches_skips_a_diverged_chain_and_reruns_nothing(tmp_path):
    spec = parse_ladder(ladder_dict(tune={"optim.lr": [0.01, 0.05]}, seeds=[0, 1]), "ladder.yaml")
    plan = build_ladder_plan(spec, tmp_path / "out")
    fake = FakeTrainer(diverge_above=0.02)
    results = LadderRunner(plan, execute=fake).run()
    started = dict(fake.calls)
    # lr 0.05 diverged in its first run: the longer budget was never started and is marked diverged.
    assert "t_rmsnorm_a_lr0.05_tpp0.25_seed0" in started and "t_rmsnorm_a_lr0.05_tpp0.5_seed0" not in started
    marked = (plan.out / "t_rmsnorm_a_lr0.05_tpp0.5_seed0" / "diverged.txt").read_text()
    assert "not trained: the run it branches from, t_rmsnorm_a_lr0.05_tpp0.25_seed0, diverged" in marked
    selection = json.loads((plan.out / "selection.json").read_text())
    assert selection["rmsnorm"]["a"]["point"] == {"optim.lr": 0.01}
    assert selection["rmsnorm"]["a"]["failed_points"] == [{"optim.lr": 0.05}]
    # Each longer budget resumed the shorter run's decay-start checkpoint; each chain's first run resumes itself.
    for chain in plan.final_chains({arm: {"a": results.choices[arm]["a"].point} for arm in results.choices}):
        first, branch = chain.runs
        assert started[first.run.name] == "auto" and started[branch.run.name] == str(branch.branch_point)
    # 2 arms x 3 sizes x 2 budgets x 2 seeds points, the chosen point's only, every one with a test loss.
    assert len(results.points) == 24 and all(p.loss is not None for p in results.points)
    assert {p.point.as_dict()["optim.lr"] for p in results.points if p.size == "a"} == {0.01}
    assert all(p.N == plan.n(p.arm, p.size) and p.N_total == 10_000 * {"a": 16, "b": 24, "c": 32}[p.size]
               for p in results.points)
    assert len(fake.calls) == 2 * 2 + 2 * 1 + 2 * 3 * 2 * 2 - 2 * 2  # tuning (one diverged early) + the rest

    again = FakeTrainer(diverge_above=0.02)
    rerun = LadderRunner(plan, execute=again).run()
    assert again.calls == [] and [p.loss for p in rerun.points] == [p.loss for p in results.points]
