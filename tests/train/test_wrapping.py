"""distributed.py without launching: which strategy a launch asks for, refusals, the model
wrappers applied in place, and the sharding check."""

from __future__ import annotations

import pytest
import torch

from ibnorm_llm.config import ConfigError, ModelConfig, NormConfig, load_config
from ibnorm_llm.models import build_model
from ibnorm_llm.train.distributed import (
    _check_deepspeed_parameters,
    apply_compute_options,
    check_precision,
    check_sharded,
    read_launch,
)
from ibnorm_llm.train.strategies import FSDP2, Replicated, decoder_blocks, parameter_share

VOCAB = 512
FSDP_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "WORLD_SIZE": "2",
            "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP", "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT",
            "FSDP_RESHARD_AFTER_FORWARD": "false"}


def _model(family: str, **norm):
    return build_model(ModelConfig(preset=f"{family}-tiny", n_layers=2, norm=NormConfig(kind="ibnorm", **norm)), VOCAB)


def test_the_launch_environment_names_the_strategy():
    assert read_launch({}).strategy == "none"
    assert read_launch({"WORLD_SIZE": "2"}).strategy == "ddp"
    assert read_launch({"ACCELERATE_USE_DEEPSPEED": "true", "WORLD_SIZE": "2"}).strategy == "deepspeed"
    fsdp = read_launch(FSDP_ENV)
    assert (fsdp.strategy, fsdp.world_size, fsdp.reshard_after_forward) == ("fsdp2", 2, False)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("FSDP_VERSION", "1", "fsdp_version=1"), ("FSDP_OFFLOAD_PARAMS", "true", "fsdp_offload_params=true"),
     ("FSDP_ACTIVATION_CHECKPOINTING", "true", "model.gradient_checkpointing"),
     ("FSDP_STATE_DICT_TYPE", "FULL_STATE_DICT", "fsdp_state_dict_type=FULL_STATE_DICT")],
)
def test_fsdp_settings_the_trainer_does_not_implement_are_refused(key, value, message):
    with pytest.raises(ConfigError, match=message):
        read_launch({**FSDP_ENV, key: value})


def test_bf16_on_cpu_needs_the_explicit_opt_in(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    with pytest.raises(ConfigError, match="train.allow_slow_cpu_bf16=true"):
        check_precision(load_config(None, ["train.precision=bf16-mixed"]), cuda_available=False)
    check_precision(load_config(None, ["train.precision=bf16-pure", "train.allow_slow_cpu_bf16=true"]), False)


@pytest.mark.parametrize(("family", "path"), [("llama", "model.layers"), ("gpt2", "transformer.h")])
def test_decoder_blocks_are_found_without_class_names(family, path):
    model = _model(family)
    assert decoder_blocks(model) is model.get_submodule(path)


def test_an_unsharded_model_under_a_sharding_launch_is_an_error():
    model = _model("llama")
    report = {"sharding": "fsdp2", **parameter_share(model)}
    assert report["sharded_blocks"] == 0 and report["param_elements_local"] == report["param_elements_total"]
    fsdp = FSDP2(None, reshard_after_forward=True, param_dtype=None)  # as if fully_shard had done nothing
    with pytest.raises(ConfigError, match="0 of 2 decoder blocks are sharded: the model was not sharded"):
        check_sharded(fsdp, report, world_size=2)
    check_sharded(fsdp, report, world_size=1)  # one process: nothing to split across
    check_sharded(Replicated(None, "ddp"), report, world_size=2)


def test_deepspeed_refuses_zero_dim_parameters():
    with pytest.raises(ConfigError, match=r"0-d parameters \(model.layers.0.input_layernorm.lam_raw"):
        _check_deepspeed_parameters(_model("llama", learnable_lam=True))
    _check_deepspeed_parameters(_model("llama"))


def test_bf16_pure_casts_every_parameter():
    model = _model("llama")
    apply_compute_options(load_config(None, ["train.precision=bf16-pure"]), model)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_gradient_checkpointing_recomputes_blocks_with_equal_loss_and_grads(family):
    tokens = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(0))
    results = {}
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = _model(family)
        cfg = load_config(None, [f"model.gradient_checkpointing={str(checkpointing).lower()}"])
        apply_compute_options(cfg, model)
        model.train()
        first_norm = decoder_blocks(model)[0].get_submodule("input_layernorm" if family == "llama" else "ln_1")
        calls = []
        # Not a hook on the block or its last layer: the recompute calls forward() directly and
        # stops early once the last saved activation is rebuilt.
        first_norm.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        loss = model(tokens, labels=tokens).loss
        loss.backward()
        results[checkpointing] = (loss.detach(), {n: p.grad for n, p in model.named_parameters()}, len(calls))
    (loss_plain, grads_plain, calls_plain), (loss_ckpt, grads_ckpt, calls_ckpt) = results[False], results[True]
    assert (calls_plain, calls_ckpt) == (1, 2)  # the checkpointed block ran again in the backward
    torch.testing.assert_close(loss_ckpt, loss_plain, atol=0, rtol=0)
    assert grads_plain.keys() == grads_ckpt.keys()
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], grad, atol=1e-6, rtol=1e-5, msg=name)
