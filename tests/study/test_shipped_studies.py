"""Every study file under studies/ plans without an error (each run's config is checked), and the
factorial one has the design its Makefile target and docs describe."""

from __future__ import annotations

from pathlib import Path

import pytest

from ibnorm_llm.study import build_plan, load_study

STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_shipped_study_plans(path, tmp_path):
    plan = build_plan(load_study(path), tmp_path)
    assert plan.grids and all(grid.points for grid in plan.grids.values())


def test_norm_x_optimizer_study_tunes_each_optimizer_on_its_own_rate():
    path = next(p for p in STUDIES if p.stem == "tiny_norm_x_optimizer")
    spec = load_study(path)
    assert spec.factorial.factors == {"norm": ("rmsnorm", "ibnorm_l", "derf"), "optimizer": ("adamw", "muon")}
    assert spec.grid("derf_muon") == {"optim.muon.lr": [0.01, 0.02, 0.04]}
    assert spec.grid("derf_adamw") == {"optim.lr": [1.0e-3, 3.0e-3, 1.0e-2]}
    assert len(spec.seeds) == 3
