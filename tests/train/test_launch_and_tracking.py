"""The accelerate launch files parse with the installed accelerate; wandb mode resolution."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

from ibnorm_llm.train.tracking import resolve_wandb_mode

LAUNCH = Path(__file__).resolve().parents[2] / "launch"


def load(name):
    return load_config_from_file(str(LAUNCH / name))


def test_every_launch_file_parses():
    expected = {
        "cpu.yaml": DistributedType.NO, "ddp_cpu.yaml": DistributedType.MULTI_GPU, "ddp.yaml": DistributedType.MULTI_GPU,
        "fsdp.yaml": DistributedType.FSDP, "fsdp_cpu.yaml": DistributedType.FSDP,
        "deepspeed_zero2.yaml": DistributedType.DEEPSPEED,
        "deepspeed_zero3.yaml": DistributedType.DEEPSPEED,
    }
    assert {p.name for p in LAUNCH.glob("*.yaml")} == set(expected)
    for name, kind in expected.items():
        cfg = load(name)
        assert cfg.distributed_type == kind, name
        assert cfg.mixed_precision == "no", f"{name}: precision belongs to train.precision"


def test_launch_file_details():
    # ddp_cpu must spawn two processes (MULTI_GPU launcher) and must not set use_cpu (that starts only one)
    ddp_cpu = load("ddp_cpu.yaml")
    assert ddp_cpu.num_processes == 2 and not ddp_cpu.use_cpu
    fsdp = load("fsdp.yaml").fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    # the CPU file runs the GPU file's code: only the process count differs
    fsdp_cpu = load("fsdp_cpu.yaml")
    assert fsdp_cpu.fsdp_config == fsdp and fsdp_cpu.num_processes == 2 and not fsdp_cpu.use_cpu
    assert load("deepspeed_zero2.yaml").deepspeed_config["zero_stage"] == 2
    zero3 = load("deepspeed_zero3.yaml").deepspeed_config
    assert zero3["zero_stage"] == 3 and zero3["zero3_save_16bit_model"] is True


@pytest.mark.parametrize(
    ("setting", "env", "mode"),
    [("off", {}, None), ("auto", {}, "offline"), ("auto", {"WANDB_API_KEY": "x"}, "online"),
     ("offline", {"WANDB_API_KEY": "x"}, "offline"), ("online", {}, "online")],
)
def test_wandb_mode(setting, env, mode):
    assert resolve_wandb_mode(setting, env) == mode


def test_precision_policy(monkeypatch):
    from ibnorm_llm.config import ConfigError, load_config
    from ibnorm_llm.train.distributed import check_precision

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    for precision in ("bf16-mixed", "bf16-pure"):
        cfg = load_config(None, [f"train.precision={precision}"])
        with pytest.raises(ConfigError, match="more than 100x slower"):
            check_precision(cfg, cuda_available=False)
        check_precision(cfg, cuda_available=True)
    check_precision(load_config(None, ["train.precision=fp32"]), cuda_available=False)
    # a launcher asking for autocast that train.precision does not want is refused, not silently overridden
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with pytest.raises(ConfigError, match="launcher asks for mixed_precision=bf16"):
        check_precision(load_config(None, ["train.precision=fp32"]), cuda_available=True)
    check_precision(load_config(None, ["train.precision=bf16-mixed"]), cuda_available=True)
