"""IBNorm's default reading: scale-free like LayerNorm, written out in every saved config and checkpoint,
and files saved before it keep the reading they were trained with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from ibnorm_llm.checkpoint import load_checkpoint
from ibnorm_llm.config import load_config, save_config
from ibnorm_llm.norms import LEGACY_OPTIONS, IBNorm, LayerNorm, NormSpec, with_legacy_options
from ibnorm_llm.norms.ibnorm import DEFAULT_DEVIATION, DEFAULT_LAM_ROLE

ROOT = Path(__file__).resolve().parents[2]
OLD_CHECKPOINT = ROOT / "tests" / "fixtures" / "checkpoints" / "llama_ibnorm_l"
SCALES = (1e-2, 1.0, 1e2)


def heavy_tailed(shape=(64, 96), seed=0) -> torch.Tensor:
    """Student-t (df 3) in float64: a normal over the root of a chi-square with 3 degrees of freedom."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g, dtype=torch.float64)
    chi2 = torch.randn((*shape, 3), generator=g, dtype=torch.float64).pow(2).sum(-1)
    return z / (chi2 / 3).sqrt()


@pytest.mark.parametrize("variant", ["S", "L", "T"])
def test_the_default_reading_is_scale_free(variant):
    x = heavy_tailed()
    # eps is the only term that is not scale-free, as for LayerNorm: with a negligible eps the output is the same
    # at every scale; with the preset eps the drift is no larger than LayerNorm's own.
    exact = IBNorm(96, variant=variant, eps=1e-30, impl="reference").double()
    for c in SCALES:
        torch.testing.assert_close(exact(c * x), exact(x), rtol=1e-9, atol=1e-9)
    ibnorm, layernorm = IBNorm(96, variant=variant, impl="reference").double(), LayerNorm(96).double()
    for c in SCALES:
        ib_drift = (ibnorm(c * x) - ibnorm(x)).abs().max()
        ln_drift = (layernorm(c * x) - layernorm(x)).abs().max()
        assert ib_drift <= 2 * ln_drift + 1e-9


def test_the_old_default_was_not_scale_free():
    x = heavy_tailed()
    old = IBNorm(96, variant="T", eps=1e-30, impl="reference", **LEGACY_OPTIONS["ibnorm"]).double()
    assert (old(100 * x) - old(x)).abs().max() > 0.1


def test_saved_configs_write_the_reading_out(tmp_path):
    cfg = load_config("llama_tiny_ibnorm_l.yaml")  # the preset names neither option
    assert (cfg.model.norm.deviation, cfg.model.norm.lam_role) == (DEFAULT_DEVIATION, DEFAULT_LAM_ROLE)
    save_config(cfg, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())["model"]["norm"]
    assert saved["deviation"] == DEFAULT_DEVIATION and saved["lam_role"] == DEFAULT_LAM_ROLE


def test_with_legacy_options_fills_only_specs_saved_before_lam_role():
    assert with_legacy_options({"kind": "ibnorm", "variant": "T"}) == {
        "kind": "ibnorm", "variant": "T", "deviation": "raw", "lam_role": "rate"}
    # an explicit deviation of an old file is kept; a spec with a lam_role is new and untouched
    assert with_legacy_options({"kind": "ibnorm", "deviation": "std"})["deviation"] == "std"
    new = {"kind": "ibnorm", "deviation": "std", "lam_role": "scale"}
    assert with_legacy_options(new) is new
    assert with_legacy_options({"kind": "rmsnorm"}) == {"kind": "rmsnorm"}


def test_an_old_default_checkpoint_keeps_its_reading(tmp_path):
    """The fixture was written when IBNorm's only reading was raw deviations, lambda as a rate; its files name
    no lam_role. It loads with that reading (tests/test_checkpoint_fixtures.py checks its logits), and a
    checkpoint saved from it writes the reading out."""
    saved_json = json.loads((OLD_CHECKPOINT / "config.json").read_text())
    assert "lam_role" not in saved_json["norm"] and "lam_role" not in (OLD_CHECKPOINT / "config.yaml").read_text()
    ckpt = load_checkpoint(OLD_CHECKPOINT)
    assert (ckpt.config.model.norm.deviation, ckpt.config.model.norm.lam_role) == ("raw", "rate")
    norms = [m for m in ckpt.model.modules() if isinstance(m, IBNorm)]
    assert norms and all((m.deviation, m.lam_role) == ("raw", "rate") for m in norms)
    ckpt.model.save_pretrained(tmp_path / "resaved")
    resaved = json.loads((tmp_path / "resaved" / "config.json").read_text())
    assert all(spec["lam_role"] == "rate" and spec["deviation"] == "raw"
               for spec in (resaved["norm"], resaved["final_norm"], *resaved["block_norms"]))


def test_a_user_config_without_the_reading_takes_todays_default(tmp_path):
    spec = NormSpec("ibnorm", variant="L")
    assert (spec.deviation, spec.lam_role) == (DEFAULT_DEVIATION, DEFAULT_LAM_ROLE)
    copy = tmp_path / "old"
    shutil.copytree(OLD_CHECKPOINT, copy)
    assert load_checkpoint(copy).config.model.norm.lam_role == "rate"  # a copy is still an old file
