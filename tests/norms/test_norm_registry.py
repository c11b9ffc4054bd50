"""The registry: names, build_norm errors, and config-time validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ibnorm_llm.config import ConfigError, load_config
from ibnorm_llm.norms import (
    NORM_OPTIONS,
    NORMS,
    NormOptionError,
    NormSpec,
    accepted_options,
    build_norm,
    check_norm_spec,
    option_defaults,
)

ROOT = Path(__file__).resolve().parents[2]


def test_accepted_options_come_from_the_options_classes():
    assert accepted_options("rmsnorm") == ("eps", "affine")
    assert accepted_options("dyt") == ("alpha_init", "affine", "bias")
    assert "lam" in accepted_options("ibnorm") and "noise_train" in accepted_options("normalnorm")
    assert list(NORM_OPTIONS) == list(NORMS)


@pytest.mark.parametrize("kind", list(NORM_OPTIONS))
def test_every_norm_builds_from_its_options_and_refuses_others(kind):
    defaults = option_defaults(kind)
    norm = build_norm(kind, 8, **defaults)
    assert type(norm) is NORMS[kind] and norm(torch.randn(3, 8)).shape == (3, 8)
    assert norm.affine is defaults["affine"]
    with pytest.raises(NormOptionError, match=f"kind '{kind}' does not take option 'gain'"):
        NORMS[kind](8, gain=2.0)


def test_config_checks_norm_specs_without_importing_torch():
    """The config package reads norm options as data: a bad value is reported before torch loads."""
    code = (
        "import sys\n"
        "from ibnorm_llm.config import ConfigError, load_config\n"
        "load_config('llama_tiny_ibnorm_l.yaml', ['model.norm.lam=2'])\n"
        "try:\n"
        "    load_config('llama_tiny_ibnorm_l.yaml', ['model.norm.lam=-1'])\n"
        "except ConfigError as err:\n"
        "    print(err)\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.splitlines() == ["model.norm.lam=-1.0: must be a finite number > 0", "False"]


def test_build_norm_returns_the_registered_class_with_options():
    norm = build_norm("ibnorm", 32, variant="T", lam=2.0, num_groups=4)
    assert type(norm) is NORMS["ibnorm"]
    assert (norm.variant, norm.lam, norm.num_groups) == ("T", 2.0, 4)
    assert norm(torch.randn(2, 32)).shape == (2, 32)


def test_build_norm_unknown_kind_lists_valid_names():
    with pytest.raises(ValueError, match=r"kind='ibnrom': unknown norm; did you mean 'ibnorm'\? valid: layernorm, rmsnorm"):
        build_norm("ibnrom", 8)


def test_build_norm_unknown_option_names_it_and_the_accepted_ones():
    with pytest.raises(ValueError, match=r"lam=2.0: kind 'rmsnorm' does not take option 'lam' \(it takes: eps, affine\)"):
        build_norm("rmsnorm", 8, lam=2.0)


def test_build_norm_checks_group_divisibility_with_the_real_width():
    with pytest.raises(ValueError, match=r"num_groups=3: must divide the feature width 32"):
        build_norm("ibnorm", 32, num_groups=3)


@pytest.mark.parametrize(
    ("norm", "message"),
    [
        ("{kind: ibnrom}", r"^model\.norm\.kind='ibnrom': unknown norm; did you mean 'ibnorm'\? valid: "),
        ("{kind: rmsnorm, lam: 2.0}",
         r"^model\.norm\.lam: kind 'rmsnorm' does not take option 'lam' \(it takes: eps, affine\)$"),
        ("{kind: ibnorm, lam: -1.0}", r"^model\.norm\.lam=-1\.0: must be a finite number > 0"),
        ("{kind: ibnorm, variant: S, lam: 0.5}", r"^model\.norm\.lam=0\.5: .*>= 1 for variant S"),
        ("{kind: ibnorm, variant: Q}", r"^model\.norm\.variant='Q': must be one of S, L, T$"),
        ("{kind: dyt, eps: 1.0e-5}", r"^model\.norm\.eps: kind 'dyt' does not take option 'eps'"),
        ("{kind: normalnorm, noise_train: -0.1}", r"^model\.norm\.noise_train=-0\.1: must be a finite number >= 0"),
        ("{kind: normalnorm, noise_std: 0.4}", r"^model\.norm\.noise_std: option 'noise_std' is now 'noise_train': .*noise_scale: std"),
        ("{kind: normalnorm, lmbda_estimate: clamped}",
         r"^model\.norm\.lmbda_estimate='clamped': must be one of newton, clamped_finite_difference$"),
        ("{kind: normalnorm, noise_scale: var}", r"^model\.norm\.noise_scale='var': must be one of mad, std$"),
        ("{kind: normalnorm, second_standardize: 1}", r"^model\.norm\.second_standardize"),
    ],
)
def test_norm_spec_errors_name_the_dotted_key(norm, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"model.norm={norm}"])


def test_good_norm_specs_load_and_pass_the_registry_check():
    for spec in (
        NormSpec("ibnorm", variant="S", lam=2.0, num_groups=3, learnable_lam=True, deviation="std"),
        NormSpec("layernorm", eps=1e-5, bias=False),
        NormSpec("rmsnorm"),
        NormSpec("dyt", alpha_init=1.0),
        NormSpec("normalnorm", noise_train=0.0),
        NormSpec("normalnorm", lmbda_estimate="clamped_finite_difference", second_standardize=True, noise_scale="std"),
    ):
        check_norm_spec(spec)
        assert load_config(None, [f"model.norm={spec.to_dict()}"]).model.norm == spec


def test_load_config_reports_norm_errors_under_their_keys():
    with pytest.raises(ConfigError, match=r"model\.norm_overrides\[0\]\.norm\.lam=0\.0"):
        load_config(None, ["model.norm_overrides=[{layers: '0-1', norm: {kind: ibnorm, lam: 0.0}}]"])
    with pytest.raises(ConfigError, match=r"model\.final_norm\.alpha_init: kind 'layernorm'"):
        load_config(None, ["model.final_norm={kind: layernorm, alpha_init: 0.5}"])
