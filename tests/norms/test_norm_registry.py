"""The registry: names, build_norm errors, and config-time validation."""

from __future__ import annotations

import pytest
import torch

from ibnorm_llm.config import ConfigError, load_config
from ibnorm_llm.norms import NORMS, NormSpec, accepted_options, build_norm, check_norm_spec


def test_accepted_options_come_from_the_constructor():
    assert accepted_options("rmsnorm") == ("eps", "affine")
    assert accepted_options("dyt") == ("alpha_init", "affine", "bias")
    assert "lam" in accepted_options("ibnorm") and "noise_std" in accepted_options("normalnorm")


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
        ("{kind: normalnorm, noise_std: -0.1}", r"^model\.norm\.noise_std=-0\.1: must be a finite number >= 0"),
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
        NormSpec("normalnorm", noise_std=0.0),
    ):
        check_norm_spec(spec)
        assert load_config(None, [f"model.norm={spec.to_dict()}"]).model.norm == spec


def test_load_config_reports_norm_errors_under_their_keys():
    with pytest.raises(ConfigError, match=r"model\.norm_overrides\[0\]\.norm\.lam=0\.0"):
        load_config(None, ["model.norm_overrides=[{layers: '0-1', norm: {kind: ibnorm, lam: 0.0}}]"])
    with pytest.raises(ConfigError, match=r"model\.final_norm\.alpha_init: kind 'layernorm'"):
        load_config(None, ["model.final_norm={kind: layernorm, alpha_init: 0.5}"])
