"""NormalNorm against the official LayerNormalNorm's equations (DanielEftekhari/normality-normalization,
layers.py), written out here in float64 from the method, and our earlier reading under its named options.

The official layer, per token x in R^D (the normalized shape is the hidden dim):
    z = (x - mean x) / sqrt(var x + eps)                                   (biased var, eps 1e-5)
    lambda = 1 - L'(1) / (L''(1) + sqrt(eps))                              (one Newton step from 1)
    y = YJ_lambda(z), exponent eta = lambda (z >= 0) or 2 - lambda (z < 0) shifted by sign(eta) sqrt(eps),
        sign(z) log1p|z| where |eta| <= sqrt(eps)
    training: y += noise_train * mean|y - mean y| * N(0, 1)                (scale detached, noise_train 1.0)
    out = weight * y + bias                                                (weight 1, bias 0 at init)
where L(lambda) = 0.5 log var(YJ_lambda(z)) - (lambda - 1) mean(sign(z) log1p|z|) is the Gaussian NLL up to
constants; its derivatives at lambda = 1 are checked against autograd on L itself.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from ibnorm_llm.checkpoint import load_checkpoint
from ibnorm_llm.config import ConfigError, config_from_tree, legacy_norm_options, load_config
from ibnorm_llm.config.resume import resume_changes
from ibnorm_llm.models import NormLlamaConfig, NormLlamaForCausalLM
from ibnorm_llm.norms import (
    LEGACY_OPTIONS,
    NormalNorm,
    NormOptionError,
    NormSpec,
    build_norm,
    with_legacy_options,
)
from ibnorm_llm.norms.normalnorm import guarded_yeo_johnson

EPS = 1e-5
D = 48
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
# A llama-tiny NormalNorm checkpoint written by the trainer before the official layer became the default
# (tests/fixtures/README.md), with what that version computed on a fixed text.
OLD_CHECKPOINT = FIXTURES / "llama_normalnorm_old"
F64 = torch.float64


def _inputs() -> dict[str, torch.Tensor]:
    """Rows of one token each (batch 3 x 5 tokens x D): symmetric, right- and left-skewed, heavy-tailed."""
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(3, 5, D, generator=g, dtype=F64)
    exponential = -torch.rand(3, 5, D, generator=g, dtype=F64).log()
    return {
        "gaussian": 2.0 * normal + 0.5,
        "right_skewed": exponential,
        "left_skewed": -exponential,
        "lognormal": torch.randn(3, 5, D, generator=g, dtype=F64).exp() * 3,
    }


# ---- the official method, written out from its equations --------------------------------------------


def ref_standardize(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def ref_branches(z: torch.Tensor):
    positive = z >= 0  # the official code maps sign(0) to +1
    return positive, torch.where(positive, 1.0, -1.0).to(z.dtype)


def ref_newton_terms(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L'(1) and L''(1) in closed form, for standardized z (mean 0, var 1)."""
    _, s = ref_branches(z)
    a = z.abs()
    log_a = torch.log1p(a)
    d = (1 + a) * log_a - a  # d YJ_lambda(z) / d lambda at lambda = 1, on both branches
    d2 = s * ((1 + a) * log_a**2 - 2 * d)  # the second derivative at lambda = 1
    var1 = 2 * (z * d).mean(-1, keepdim=True)  # d var / d lambda
    var2 = 2 * (z * d2 + (d - d.mean(-1, keepdim=True)) ** 2).mean(-1, keepdim=True)  # d^2 var / d lambda^2
    first = 0.5 * var1 - (s * log_a).mean(-1, keepdim=True)
    second = 0.5 * var2 - 0.5 * var1**2  # (log var)'' = var'' / var - (var' / var)^2 at var = 1
    return first, second


def ref_lambda(z: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    first, second = ref_newton_terms(z)
    return 1 - first / (second + math.sqrt(eps))


def ref_yeo_johnson(z: torch.Tensor, lam: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Yeo-Johnson with the official sqrt(eps) shift of the exponent and its log branch."""
    positive, _ = ref_branches(z)
    eta = torch.where(positive, lam, 2 - lam)
    e = eta + torch.where(eta.detach() >= 0, 1.0, -1.0).to(z.dtype) * math.sqrt(eps)
    pos = ((1 + z.clamp(min=0)) ** e - 1) / e
    neg = -(((1 - z.clamp(max=0)) ** e) - 1) / e
    power = torch.where(positive, pos, neg)
    log_branch = torch.where(positive, torch.log1p(z.clamp(min=0)), -torch.log1p(-z.clamp(max=0)))
    return torch.where(eta.detach().abs() <= math.sqrt(eps), log_branch, power)


def ref_mad(y: torch.Tensor) -> torch.Tensor:
    return (y - y.mean(-1, keepdim=True)).abs().mean(-1, keepdim=True)


def ref_official(x, weight, bias, noise=None, noise_train=1.0, eps=EPS, detach_lambda=False):
    z = ref_standardize(x, eps)
    lam = ref_lambda(z, eps)
    y = ref_yeo_johnson(z, lam.detach() if detach_lambda else lam, eps)
    if noise is not None:
        y = y + noise_train * ref_mad(y).detach() * noise
    return weight * y + bias


def _random_affine(norm: NormalNorm, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(norm.weight.shape, generator=g, dtype=F64))
        norm.bias.copy_(0.3 * torch.randn(norm.bias.shape, generator=g, dtype=F64))


# ---- the default is the official layer ------------------------------------------------------------------


def test_the_closed_form_newton_terms_are_the_nll_derivatives():
    """The official L'(1), L''(1) are the derivatives of the Gaussian NLL of YJ_lambda(z) at lambda = 1:
    autograd on L itself agrees (z standardized without eps, so mean 0 and var 1 exactly)."""
    for x in _inputs().values():
        z = ref_standardize(x[0, :2], eps=0.0)  # two tokens
        for row in range(2):
            zr = z[row]
            lam = torch.tensor(1.0, dtype=F64, requires_grad=True)
            _, s = ref_branches(zr)
            positive = zr >= 0
            eta = torch.where(positive, lam, 2 - lam)
            t = torch.where(positive, ((1 + zr.abs()) ** eta - 1) / eta, -(((1 + zr.abs()) ** eta) - 1) / eta)
            nll = 0.5 * torch.log(t.var(unbiased=False)) - (lam - 1) * (s * torch.log1p(zr.abs())).mean()
            (first,) = torch.autograd.grad(nll, lam, create_graph=True)
            (second,) = torch.autograd.grad(first, lam)
            want_first, want_second = ref_newton_terms(zr)
            torch.testing.assert_close(first.detach(), want_first[0], rtol=1e-9, atol=1e-11)
            torch.testing.assert_close(second, want_second[0], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", list(_inputs()))
def test_default_eval_output_matches_the_official_equations(name):
    x = _inputs()[name]
    norm = NormalNorm(D).double().eval()
    _random_affine(norm)
    torch.testing.assert_close(norm(x), ref_official(x, norm.weight, norm.bias), rtol=1e-10, atol=1e-10)
    # fp32 input: computed in fp32, as the official layer computes in its input's dtype
    norm32 = NormalNorm(D).eval()
    _random_affine(norm32)
    want = ref_official(x, norm32.weight.double(), norm32.bias.double())
    torch.testing.assert_close(norm32(x.float()).double(), want, rtol=1e-4, atol=2e-4)


def test_lambda_is_one_newton_step_unclamped():
    """On skewed tokens the official lambda leaves (0, 2) (our old estimate was clamped to [0.1, 1.9]);
    the output still follows the equations there."""
    x = _inputs()["lognormal"]
    lam = ref_lambda(ref_standardize(x))
    assert (lam < 0).any() and (lam < 0.1).sum() > lam.numel() // 2
    left = ref_lambda(ref_standardize(-x))
    assert (left > 2).any()
    norm = NormalNorm(D).double().eval()
    torch.testing.assert_close(norm(-x), ref_official(-x, 1.0, 0.0), rtol=1e-10, atol=1e-10)


def test_the_log_branch_where_the_exponent_vanishes():
    """lambda = 0 puts z >= 0 on the log branch (eta = 0), lambda = 2 puts z < 0 there."""
    z = torch.linspace(-3, 3, 13, dtype=F64)
    for value in (0.0, 2.0, 1e-3, 2 - 1e-3, 0.7):
        lam = torch.tensor(value, dtype=F64)
        torch.testing.assert_close(guarded_yeo_johnson(z, lam, EPS), ref_yeo_johnson(z, lam), rtol=1e-12, atol=1e-12)
    lam0 = guarded_yeo_johnson(z, torch.tensor(0.0, dtype=F64), EPS)
    torch.testing.assert_close(lam0[z >= 0], torch.log1p(z[z >= 0]))


@pytest.mark.parametrize("name", ["gaussian", "right_skewed", "lognormal"])
def test_the_gradient_flows_through_lambda(name):
    """Autograd of the module (x, weight, bias) equals autograd of the float64 equations with lambda a function
    of x, and differs from what a detached lambda would give."""
    x = _inputs()[name]
    grad_out = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
    norm = NormalNorm(D).double().eval()
    _random_affine(norm)
    x_module = x.clone().requires_grad_()
    (norm(x_module) * grad_out).sum().backward()

    x_ref = x.clone().requires_grad_()
    weight = norm.weight.detach().clone().requires_grad_()
    bias = norm.bias.detach().clone().requires_grad_()
    (ref_official(x_ref, weight, bias) * grad_out).sum().backward()
    torch.testing.assert_close(x_module.grad, x_ref.grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(norm.weight.grad, weight.grad, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(norm.bias.grad, bias.grad, rtol=1e-9, atol=1e-10)

    x_detached = x.clone().requires_grad_()
    (ref_official(x_detached, weight.detach(), bias.detach(), detach_lambda=True) * grad_out).sum().backward()
    assert (x_detached.grad - x_ref.grad).abs().max() > 1e-3


def test_gradcheck_through_lambda():
    norm = NormalNorm(8).double().eval()
    _random_affine(norm)
    x = _inputs()["right_skewed"][:, :2, :8].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda inp: norm(inp), (x,), eps=1e-6, atol=1e-6)


def test_training_noise_is_mad_times_noise_train():
    x = _inputs()["right_skewed"].float()
    for noise_train in (1.0, 1.5):
        norm = NormalNorm(D, noise_train=noise_train)
        _random_affine(norm)
        clean = norm.eval()(x)
        torch.manual_seed(7)
        noisy = norm.train()(x)
        torch.manual_seed(7)
        draw = torch.randn(x.shape).double()  # the module draws one standard normal per element
        want = ref_official(x.double(), norm.weight.double(), norm.bias.double(), noise=draw, noise_train=noise_train)
        torch.testing.assert_close(noisy.double(), want, rtol=1e-4, atol=2e-4)
        assert (noisy - clean).abs().max() > 0.1
    assert NormalNorm(D).noise_train == 1.0  # the official LayerNormalNorm default
    silent = NormalNorm(D, noise_train=0.0)
    torch.testing.assert_close(silent.train()(x), silent.eval()(x), rtol=0, atol=0)


def test_the_noise_scale_carries_no_gradient():
    """The noise is additive with a detached scale: train-mode gradients equal eval-mode ones."""
    x = _inputs()["lognormal"]
    grad_out = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=F64)
    norm = NormalNorm(D).double()
    grads = []
    for train in (False, True):
        xi = x.clone().requires_grad_()
        (norm.train(train)(xi) * grad_out).sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-10)


def test_eval_mode_is_per_token_and_keeps_no_state():
    """LayerNormalNorm has no running statistics: each token's output depends on that token only, in both
    modes, and the module holds no buffers."""
    x = _inputs()["right_skewed"]
    norm = NormalNorm(D).double().eval()
    y = norm(x)
    other = x.clone()
    other[:, 1:] = other[:, 1:] * 5 + 3
    torch.testing.assert_close(norm(other)[:, 0], y[:, 0], rtol=0, atol=0)
    assert list(norm.buffers()) == []
    torch.testing.assert_close(norm(x), y, rtol=0, atol=0)


def test_parameters_are_the_official_ones():
    """weight (init 1) and bias (init 0) of shape (D,), as LayerNormalNorm's elementwise affine; the same
    state-dict keys."""
    norm = NormalNorm(D)
    assert {k: tuple(v.shape) for k, v in norm.state_dict().items()} == {"weight": (D,), "bias": (D,)}
    assert torch.equal(norm.weight, torch.ones(D)) and torch.equal(norm.bias, torch.zeros(D))
    assert [n for n, _ in NormalNorm(D, affine=False).named_parameters()] == []
    assert [n for n, _ in NormalNorm(D, bias=False).named_parameters()] == ["weight"]
    defaults = NormalNorm(D)
    assert (defaults.eps, defaults.noise_train, defaults.noise_scale, defaults.lmbda_estimate,
            defaults.second_standardize) == (1e-5, 1.0, "mad", "newton", False)


def test_groups_are_independent_tokens():
    """num_groups (ours, default 1 = the official layer) splits the width into equal, independent groups."""
    x = _inputs()["lognormal"]
    grouped = NormalNorm(D, num_groups=4, affine=False).double().eval()
    single = NormalNorm(D // 4, affine=False).double().eval()
    torch.testing.assert_close(grouped(x), single(x.reshape(3, 5, 4, D // 4)).reshape(x.shape), rtol=0, atol=0)


def test_the_default_makes_skewed_tokens_more_gaussian():
    x = _inputs()["lognormal"].reshape(-1, D)
    y = NormalNorm(D).double().eval()(x)

    def skewness(t):
        c = t - t.mean(-1, keepdim=True)
        return (c.pow(3).mean(-1) / c.pow(2).mean(-1).pow(1.5)).abs().mean()

    assert skewness(y) < 0.5 * skewness(x)


# ---- our earlier reading, under its named options -------------------------------------------------------


OLD = {"lmbda_estimate": "clamped_finite_difference", "second_standardize": True, "noise_scale": "std",
       "noise_train": 0.4}


def ref_old_lambda(z: torch.Tensor) -> torch.Tensor:
    """Two Newton steps from 1 with central differences (step 0.01) on the same NLL, stepping only where it
    is convex, clamped to [0.1, 1.9] after each step."""
    log_term = (torch.sign(z) * torch.log1p(z.abs())).mean(-1, keepdim=True)

    def nll(p):
        t = torch.where(z >= 0, ((1 + z.clamp(min=0)) ** p - 1) / p, -(((1 - z.clamp(max=0)) ** (2 - p)) - 1) / (2 - p))
        return 0.5 * torch.log(t.var(-1, unbiased=False, keepdim=True)) - (p - 1) * log_term

    p, h = torch.ones_like(z[..., :1]), 0.01
    for _ in range(2):
        fm, f0, fp = nll(p - h), nll(p), nll(p + h)
        slope, curvature = (fp - fm) / (2 * h), (fp - 2 * f0 + fm) / h**2
        p = (p + torch.where(curvature > 0, -slope / curvature, torch.zeros_like(p))).clamp(0.1, 1.9)
    return p


def ref_old(x, weight, bias, noise=None):
    z = ref_standardize(x)
    p = ref_old_lambda(z.detach())
    t = torch.where(z >= 0, ((1 + z.clamp(min=0)) ** p - 1) / p, -(((1 - z.clamp(max=0)) ** (2 - p)) - 1) / (2 - p))
    y = ref_standardize(t)
    if noise is not None:
        y = y + 0.4 * y.detach().std(-1, unbiased=False, keepdim=True) * noise
    return weight * y + bias


def test_the_legacy_options_are_our_earlier_reading():
    assert LEGACY_OPTIONS["normalnorm"] == OLD


@pytest.mark.parametrize("name", ["gaussian", "right_skewed", "lognormal"])
def test_the_old_options_reproduce_the_old_reading(name):
    x = _inputs()[name]
    grad_out = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=F64)
    norm = NormalNorm(D, **OLD).double().eval()
    _random_affine(norm)
    xm = x.clone().requires_grad_()
    y = norm(xm)
    (y * grad_out).sum().backward()
    xr = x.clone().requires_grad_()
    want = ref_old(xr, norm.weight.detach(), norm.bias.detach())
    (want * grad_out).sum().backward()
    torch.testing.assert_close(y, want, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(xm.grad, xr.grad, rtol=1e-8, atol=1e-9)  # the old power is detached
    lam = ref_old_lambda(ref_standardize(x))
    assert lam.min() >= 0.1 and lam.max() <= 1.9
    official = NormalNorm(D).double().eval()
    official.load_state_dict(norm.state_dict())
    assert (y - official(x)).abs().max() > 0.1  # the two readings differ visibly

    torch.manual_seed(9)
    noisy = norm.train()(x)
    torch.manual_seed(9)
    draw = torch.randn(x.shape, dtype=F64)
    torch.testing.assert_close(noisy, ref_old(x, norm.weight.detach(), norm.bias.detach(), noise=draw),
                               rtol=1e-9, atol=1e-9)


# ---- options, specs and checkpoints saved before the change ----------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"noise_train": -0.5}, r"^noise_train=-0\.5: must be a finite number >= 0"),
        ({"noise_train": float("nan")}, r"^noise_train=nan: must be a finite number >= 0"),
        ({"noise_scale": "var"}, r"^noise_scale='var': must be one of mad, std$"),
        ({"lmbda_estimate": "bisection"}, r"^lmbda_estimate='bisection': must be one of newton, clamped_finite_difference$"),
        ({"second_standardize": "yes"}, r"^second_standardize='yes': must be true or false$"),
        ({"eps": 0.0}, r"^eps=0\.0: must be a finite number > 0"),
        ({"noise_std": 0.4}, r"^noise_std=0\.4: option 'noise_std' is now 'noise_train': .*noise_scale: std with "
                             r"noise_train: 0\.4 is the old noise_std: 0\.4"),
    ],
)
def test_bad_options_are_rejected_naming_the_option(options, message):
    with pytest.raises(NormOptionError, match=message):
        build_norm("normalnorm", D, **options)


# What a normalnorm spec looked like in a config.json / config.yaml saved before the change.
OLD_SPEC = {"kind": "normalnorm", "num_groups": 1, "eps": 1e-6, "noise_std": 0.4, "affine": True, "bias": True}


def test_specs_saved_before_the_change_keep_the_old_reading():
    assert with_legacy_options(OLD_SPEC) == {
        "kind": "normalnorm", "num_groups": 1, "eps": 1e-6, "noise_train": 0.4, "affine": True, "bias": True,
        "lmbda_estimate": "clamped_finite_difference", "second_standardize": True, "noise_scale": "std"}
    # an old spec that set noise_std keeps its value; one that left it unset (null) takes the old 0.4
    assert with_legacy_options({**OLD_SPEC, "noise_std": 0.1})["noise_train"] == 0.1
    assert with_legacy_options({"kind": "normalnorm", "noise_std": None})["noise_train"] == 0.4
    # other kinds in the old flat config.yaml listed noise_std as null: dropped
    assert with_legacy_options({"kind": "layernorm", "eps": 1e-5, "noise_std": None}) == {"kind": "layernorm", "eps": 1e-5}
    # a spec written now names its lmbda_estimate and is returned as it is
    new = NormSpec("normalnorm").to_dict()
    assert new["lmbda_estimate"] == "newton" and with_legacy_options(new) is new


def test_an_old_run_config_and_an_old_hf_config_build_the_old_norm():
    tree = yaml.safe_load(yaml.safe_dump({"model": {"preset": "llama-tiny", "norm": OLD_SPEC}}))
    spec = config_from_tree(legacy_norm_options(tree)).model.norm
    assert {k: spec.options()[k] for k in OLD} == OLD

    sizes = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, vocab_size=64)
    config = NormLlamaConfig(norm=dict(OLD_SPEC), block_norms=[dict(OLD_SPEC)] * 2, final_norm=dict(OLD_SPEC), **sizes)
    norms = [m for m in NormLlamaForCausalLM(config).modules() if isinstance(m, NormalNorm)]
    assert len(norms) == 5 and all(
        (m.lmbda_estimate, m.second_standardize, m.noise_scale, m.noise_train) == tuple(OLD.values()) for m in norms)
    # re-saved, the config writes the old reading out
    assert all(spec["lmbda_estimate"] == "clamped_finite_difference" and "noise_std" not in spec
               for spec in (config.to_dict()["norm"], config.to_dict()["final_norm"], *config.to_dict()["block_norms"]))
    # a config written now keeps the official reading
    fresh = NormLlamaConfig(norm=NormSpec("normalnorm").to_dict(), **sizes)
    assert fresh.norm["lmbda_estimate"] == "newton" and fresh.block_norms[0]["noise_scale"] == "mad"


def _logits(model, expected) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([expected["input_ids"][: expected["forward_on_first"]]])
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    return out.loss, out.logits[0, -1, :16]


def test_a_checkpoint_saved_before_the_change_computes_what_it_did():
    expected = json.loads((FIXTURES / "llama_normalnorm_old.expected.json").read_text())
    saved = json.loads((OLD_CHECKPOINT / "config.json").read_text())
    assert "noise_std" in saved["norm"] and "lmbda_estimate" not in saved["norm"]  # written before the change
    ckpt = load_checkpoint(OLD_CHECKPOINT)
    norms = [m for m in ckpt.model.modules() if isinstance(m, NormalNorm)]
    assert len(norms) == 5 and all(
        (m.lmbda_estimate, m.second_standardize, m.noise_scale, m.noise_train, m.eps) == (*OLD.values(), 1e-6)
        for m in norms)
    loss, logits = _logits(ckpt.model, expected)
    assert float(loss) == pytest.approx(expected["loss"], abs=1e-5)
    torch.testing.assert_close(logits, torch.tensor(expected["last_logits_first16"]), atol=1e-5, rtol=0)
    # its run config (config.yaml names only the kind) carries the old reading too
    assert {k: ckpt.config.model.norm.options()[k] for k in OLD} == OLD

    # the same weights under the official reading compute something else: the fixture tells the two apart
    official = {"kind": "normalnorm", **dataclasses.asdict(NormSpec("normalnorm").resolve()), "eps": 1e-6}
    config = type(ckpt.model.config).from_dict(
        {**ckpt.model.config.to_dict(), "norm": official, "final_norm": official, "block_norms": [official] * 2})
    model = type(ckpt.model)(config)
    model.load_state_dict(ckpt.model.state_dict())
    _, official_logits = _logits(model.eval(), expected)
    assert (official_logits - logits).abs().max() > 1e-3


def test_resuming_an_old_run_with_a_config_that_now_means_the_official_layer_is_refused():
    """The old run's config.yaml says only ``kind: normalnorm``; loaded as a config today it means the official
    layer, and resuming with it names each option that changed."""
    saved_tree = yaml.safe_load((OLD_CHECKPOINT / "config.yaml").read_text())
    cfg = load_config(OLD_CHECKPOINT / "config.yaml", ["train.resume=auto"])
    with pytest.raises(ConfigError, match=r"model\.norm\.lmbda_estimate clamped_finite_difference -> newton.*"
                                          r"model\.norm\.noise_scale std -> mad"):
        resume_changes(saved_tree, cfg, "config.yaml")
    # naming the earlier reading resumes it
    old_norm = "{kind: normalnorm, " + ", ".join(f"{k}: {v}" for k, v in OLD.items()) + "}"
    keep = load_config(OLD_CHECKPOINT / "config.yaml", ["train.resume=auto", f"model.norm={old_norm}"])
    assert resume_changes(saved_tree, keep, "config.yaml") == []
