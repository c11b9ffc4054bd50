"""Every shipped config loads through the strict config system and follows its recipe."""

import subprocess
import sys
from pathlib import Path

import pytest

from ibnorm_llm.config import CONFIG_DIR, EmbedScaleConfig, load_config

CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
ROOT = Path(__file__).resolve().parent.parent
# The 2025-26 baselines: name suffix -> (norm kind, norm_placement, norm_scaling)
BASELINES = {
    "dyt": ("dyt", "pre", "none"),
    "derf": ("derf", "pre", "none"),
    "seednorm": ("seednorm", "pre", "none"),
    "rmsnorm_peri": ("rmsnorm", "peri", "none"),
    "rmsnorm_mix": ("rmsnorm", "mix", "none"),
    "rmsnorm_lns": ("rmsnorm", "pre", "lns"),
    "ibnorm_l_peri": ("ibnorm", "peri", "none"),
    "rmsnorm_hybrid": ("rmsnorm", "hybrid", "none"),
    "rmsnorm_hybrid_star": ("rmsnorm", "hybrid_star", "none"),
    "rmsnorm_deepnorm": ("rmsnorm", "deepnorm", "none"),
    "ngpt": ("rmsnorm", "pre", "none"),  # model.architecture=ngpt: the norm settings stay at their (unused) defaults
}


def test_grid_is_complete():
    names = {p.stem for p in CONFIGS}
    for size in ("60m", "130m", "350m", "1b"):
        assert {f"llama{size}_rmsnorm", *(f"llama{size}_ibnorm_{v}" for v in "slt")} <= names
    for size in ("124m", "355m"):
        assert {f"gpt2_{size}_layernorm", *(f"gpt2_{size}_ibnorm_{v}" for v in "slt")} <= names
    assert {"llama_tiny_rmsnorm", "llama_tiny_ibnorm_l", "gpt2_tiny_layernorm", "gpt2_tiny_ibnorm_l"} <= names
    for size in ("60m", "130m", "_tiny"):
        assert {f"llama{size}_{baseline}" for baseline in BASELINES} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_matches_its_name(path):
    cfg = load_config(path)
    assert cfg.run_name == path.stem
    norm = cfg.model.norm
    baseline = next((name for name in BASELINES if path.stem.endswith(f"_{name}")), None)
    if baseline is not None:
        assert (norm.kind, cfg.model.norm_placement, cfg.model.norm_scaling) == BASELINES[baseline]
        assert norm.lam == (4.0 if norm.kind == "ibnorm" else None)
    elif "_ibnorm_" in path.stem:
        assert (norm.kind, norm.variant, norm.lam) == ("ibnorm", path.stem[-1].upper(), 4.0)
    else:
        assert norm.kind == ("rmsnorm" if path.stem.startswith("llama") else "layernorm")
    # The authors' settings beyond the norm (docs/baselines.md): the DyT/Derf LM recipe, the Mix-LN/LNS
    # codes' embedding init; every other config keeps the defaults (no scale, alpha per spec, init_std).
    assert cfg.model.architecture == ("ngpt" if baseline == "ngpt" else "standard")
    recipe = baseline in ("dyt", "derf")
    assert cfg.model.embed_scale == (EmbedScaleConfig(init="sqrt_d", learnable=True) if recipe else None)
    assert cfg.model.alpha_init == ("dyt_width" if recipe else None)
    if recipe:
        assert norm.bias is False
    assert cfg.model.embed_init_std == ((2 / 5) ** 0.5 if baseline in ("rmsnorm_mix", "rmsnorm_lns") else None)
    if "_tiny_" in path.stem:
        assert (cfg.data.source, cfg.train.precision) == ("builtin", "fp32")
    elif path.stem.startswith("llama"):
        assert (cfg.tokenizer.name_or_path, cfg.data.seq_len, cfg.data.packing) == ("t5-base", 256, "pad")
        assert (cfg.optim.name, cfg.optim.grad_clip, cfg.train.precision) == ("adam", 0.0, "bf16-pure")
        assert cfg.train.global_batch_size == 512
        assert cfg.optim.warmup_steps * 10 == cfg.train.max_steps
    else:
        assert (cfg.tokenizer.name_or_path, cfg.data.seq_len, cfg.optim.betas) == ("gpt2", 1024, (0.9, 0.95))
        assert cfg.train.global_batch_tokens == 524288 and cfg.train.precision == "bf16-mixed"


def test_configs_match_their_generator():
    result = subprocess.run([sys.executable, "scripts/make_configs.py", "--check"], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
