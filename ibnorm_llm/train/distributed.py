"""The one place that forms the process group and wraps the model for training.

accelerate launches the processes (``accelerate launch --config_file launch/*.yaml``) and
owns the process group; this module reads which strategy the launch file asked for and
applies everything that changes the model, in one function and one order (``wrap_model``):

    precision (bf16-pure cast) -> activation checkpointing -> torch.compile
    -> DDP / FSDP2 / DeepSpeed (strategies.py) -> optimizer -> "did it really shard?" check

- CPU-only machines: ``Accelerator(cpu=True)``. Under ``accelerate launch`` with a
  MULTI_GPU config and no CUDA, each spawned process would otherwise run ALONE (world size 1,
  every process "main"): ``use_cpu: true`` in the launcher's YAML does not reach the spawned
  processes, only ``ACCELERATE_USE_CPU=true`` or this argument does. DeepSpeed launches are
  the exception: ``cpu=True`` turns DeepSpeed off, so there the gloo backend is named instead.
- FSDP launch files: accelerate's own FSDP does not engage on CPU, so FSDP2 is applied by
  strategies.FSDP2 on CPU and GPU alike, and accelerate forms a plain process group.
- Precision comes from ``train.precision`` only: ``fp32``; ``bf16-mixed`` (autocast with
  fp32 master weights; FSDP2's MixedPrecisionPolicy under FSDP2; DeepSpeed's bf16 section
  under DeepSpeed); ``bf16-pure`` (the GaLore/paper recipe: the whole model cast to bf16).
  Norms compute their statistics in fp32 in every mode. bf16 on a CPU is refused unless
  ``train.allow_slow_cpu_bf16=true``: it is emulated there and more than 100x slower.
- A launch that asked for FSDP or DeepSpeed and did not get it sharded, or processes that
  did not join one group, stop with an error instead of training unsharded.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs, broadcast_object_list, gather_object

from ibnorm_llm.config import ConfigError, RunConfig
from ibnorm_llm.train.batching import BatchPlan
from ibnorm_llm.train.strategies import FSDP2, DeepSpeed, OptimizerFactory, Replicated, Strategy, decoder_blocks

_AUTOCAST = {"fp32": "no", "bf16-mixed": "bf16", "bf16-pure": "no"}
# FSDP settings of the launch file this trainer implements; anything else is refused, not ignored.
_FSDP_SUPPORTED = {
    "FSDP_VERSION": ("2",),
    "FSDP_AUTO_WRAP_POLICY": ("TRANSFORMER_BASED_WRAP",),
    "FSDP_STATE_DICT_TYPE": ("SHARDED_STATE_DICT",),
    "FSDP_OFFLOAD_PARAMS": ("false",),
    "FSDP_ACTIVATION_CHECKPOINTING": ("false",),
}


@dataclass(frozen=True)
class Launch:
    """What the launcher asked for, read from the environment ``accelerate launch`` sets."""

    strategy: str
    """none (one process), ddp, fsdp2 or deepspeed."""
    world_size: int
    """Processes the launcher started (WORLD_SIZE)."""
    reshard_after_forward: bool = True
    """FSDP2: free a block's gathered parameters after its forward (the launch file's setting)."""


def read_launch(env=os.environ) -> Launch:
    """The strategy of the launch file, refusing FSDP settings this trainer does not implement."""
    world = int(env.get("WORLD_SIZE", "1"))
    if env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return Launch("deepspeed", world)
    if env.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        for key, allowed in _FSDP_SUPPORTED.items():
            value = env.get(key)
            if value is not None and value not in allowed:
                raise ConfigError(
                    f"the launch file sets {key.lower()}={value}; this trainer applies FSDP2 itself and supports "
                    f"only {key.lower()}={allowed[0]} (activation checkpointing: set model.gradient_checkpointing=true)"
                )
        if "FSDP_VERSION" not in env:
            raise ConfigError("the launch file asks for FSDP without fsdp_version: 2; copy launch/fsdp.yaml")
        return Launch("fsdp2", world, env.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() == "true")
    return Launch("ddp" if world > 1 else "none", world)


def check_precision(cfg: RunConfig, cuda_available: bool) -> None:
    """Refuse settings that cannot run well here, before anything is built."""
    precision = cfg.train.precision
    if precision != "fp32" and not cuda_available and not cfg.train.allow_slow_cpu_bf16:
        raise ConfigError(
            f"train.precision={precision} on a machine without a CUDA GPU: this CPU has no native bf16 units, "
            "so bf16 runs more than 100x slower than fp32. Use train.precision=fp32 on CPU (the *_tiny configs do); "
            "bf16-mixed and bf16-pure are for GPUs (train.allow_slow_cpu_bf16=true runs them anyway, for tests)."
        )
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launcher not in ("no", _AUTOCAST[precision]):
        raise ConfigError(
            f"the accelerate launcher asks for mixed_precision={launcher}, but train.precision={precision}: "
            "precision is set by train.precision only. Leave the launcher's mixed_precision at 'no' "
            "(as launch/*.yaml do) and set train.precision=bf16-mixed or bf16-pure instead."
        )


def build_accelerator(cfg: RunConfig, launch: Launch) -> Accelerator:
    """The Accelerator for this process (see the module docstring for the CPU rule)."""
    cuda = torch.cuda.is_available()
    check_precision(cfg, cuda)
    if cfg.optim.name == "muon" and launch.strategy == "deepspeed":
        # ZeRO flattens the parameters into 1-D partitions; Newton-Schulz needs each whole matrix.
        raise ConfigError(
            "optim.name=muon under DeepSpeed ZeRO: DeepSpeed's optimizer wrapping flattens and partitions the "
            "parameters, so Muon cannot see its matrices. Muon trains with one process, DDP (launch/ddp.yaml, "
            "launch/ddp_cpu.yaml) or FSDP2 (launch/fsdp.yaml, launch/fsdp_cpu.yaml); or use optim.name=adamw."
        )
    # FSDP2 applies its own bf16 policy instead of autocast.
    mixed = "no" if launch.strategy == "fsdp2" else _AUTOCAST[cfg.train.precision]
    if launch.strategy == "fsdp2":
        # strategies.FSDP2 shards the model; accelerate only forms the process group.
        os.environ["ACCELERATE_USE_FSDP"] = "false"
    if launch.strategy == "deepspeed" and not cuda:
        # cpu=True would switch DeepSpeed off; without a backend accelerate counts world size 1
        # while DeepSpeed's own group has all ranks. Naming gloo gives both the real group.
        accelerator = Accelerator(mixed_precision=mixed, kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])
    else:
        accelerator = Accelerator(cpu=not cuda, mixed_precision=mixed)
    _check_group(accelerator, launch)
    if cfg.train.skip_nonfinite and launch.strategy == "deepspeed":
        raise ConfigError(
            "train.skip_nonfinite=true under DeepSpeed: the DeepSpeed engine applies the update inside backward, "
            "so a bad step cannot be skipped. Set train.skip_nonfinite=false (the run then stops on a non-finite "
            "loss or gradient) or launch with ddp/fsdp."
        )
    if cfg.train.skip_spikes and launch.strategy == "deepspeed":
        raise ConfigError(
            "train.skip_spikes=true under DeepSpeed: the DeepSpeed engine applies the update inside backward, "
            "so a spiking step cannot be skipped. Set train.skip_spikes=false (spikes are still logged with "
            "monitor.every > 0) or launch with ddp/fsdp."
        )
    if cfg.train.precision == "bf16-pure" and launch.strategy == "deepspeed":
        raise ConfigError(
            "train.precision=bf16-pure under DeepSpeed: DeepSpeed's bf16 mode keeps fp32 master weights, use "
            "train.precision=bf16-mixed with launch/deepspeed_zero*.yaml, or launch bf16-pure with ddp.yaml/fsdp.yaml."
        )
    return accelerator


def _check_group(accelerator: Accelerator, launch: Launch) -> None:
    """The processes the launcher started must form one group of the kind it asked for."""
    if accelerator.num_processes != launch.world_size:
        raise ConfigError(
            f"the launcher started {launch.world_size} processes but this one joined a group of "
            f"{accelerator.num_processes}: each would train alone. Launch with launch/*.yaml, which this trainer supports."
        )
    if launch.strategy == "deepspeed" and accelerator.distributed_type != DistributedType.DEEPSPEED:
        raise ConfigError(
            f"the launch file asks for DeepSpeed but accelerate set up {accelerator.distributed_type.value}: the "
            "model would not be sharded. Check that deepspeed is installed and the launch file's deepspeed_config."
        )


def check_shared_out_dir(accelerator: Accelerator, run_dir: Path) -> None:
    """Stop before training when the ranks do not see one run directory (checkpoints need one).

    The main process writes a marker file with a fresh name into run_dir; every rank looks
    for it in its own run_dir. Node-local scratch (or a different out_dir per node) fails here
    instead of at the first checkpoint.
    """
    if accelerator.num_processes == 1:
        return
    token = [secrets.token_hex(8) if accelerator.is_main_process else None]
    broadcast_object_list(token)
    marker = Path(run_dir) / f".shared_fs_check_{token[0]}"
    if accelerator.is_main_process:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("written by rank 0 to check that every rank sees this directory\n")
    accelerator.wait_for_everyone()
    seen = gather_object([(accelerator.process_index, marker.is_file())])
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        marker.unlink()
    blind = [rank for rank, ok in seen if not ok]
    if blind:
        raise ConfigError(
            f"out_dir: rank 0 wrote {marker.name} into its run directory, and rank(s) {blind} did not find it in "
            f"theirs ({run_dir} on this rank): the ranks do not share one run directory (node-local scratch, or a different out_dir per node). out_dir must be on a "
            "filesystem all nodes share, as every rank writes its part of each checkpoint into one directory."
        )


def build_strategy(accelerator: Accelerator, launch: Launch, precision: str) -> Strategy:
    if launch.strategy == "fsdp2":
        param_dtype = torch.bfloat16 if precision == "bf16-mixed" else None
        return FSDP2(accelerator, reshard_after_forward=launch.reshard_after_forward, param_dtype=param_dtype)
    if launch.strategy == "deepspeed":
        return DeepSpeed(accelerator, accelerator.state.deepspeed_plugin.zero_stage)
    return Replicated(accelerator, launch.strategy)


def _configure_deepspeed(accelerator: Accelerator, plan: BatchPlan, grad_clip: float, precision: str) -> None:
    """DeepSpeed reads batch shape, clipping and bf16 from its own config: set them from ours."""
    ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
    ds_config["train_micro_batch_size_per_gpu"] = plan.micro_batch_size
    ds_config["gradient_accumulation_steps"] = plan.grad_accum
    ds_config["train_batch_size"] = plan.global_batch_size
    ds_config["gradient_clipping"] = grad_clip
    ds_config["bf16"] = {"enabled": precision == "bf16-mixed"}


def _check_deepspeed_parameters(model: torch.nn.Module) -> None:
    """DeepSpeed's engine broadcasts every parameter as bytes, which fails on 0-d tensors."""
    scalars = [name for name, p in model.named_parameters() if p.dim() == 0]
    if scalars:
        raise ConfigError(
            f"DeepSpeed cannot train 0-d parameters ({', '.join(scalars[:3])}{', ...' if len(scalars) > 3 else ''}: "
            "a learnable IBNorm lambda, model.norm.learnable_lam=true, or DyT's alpha). Launch with "
            "launch/fsdp.yaml or launch/ddp.yaml, or keep lambda fixed."
        )


def apply_compute_options(cfg: RunConfig, model: torch.nn.Module, *, compile_per_block: bool = False) -> None:
    """Steps 1-3 of wrap_model, in place: the bf16-pure cast, activation checkpointing, compile
    (also used by scripts/bench_train.py's plain loop, so both run the same model)."""
    if cfg.train.precision == "bf16-pure":
        model.to(torch.bfloat16)  # the paper's recipe: no fp32 copy of the weights
    if cfg.model.gradient_checkpointing:
        # Renamed activation_checkpointing_enable in transformers 5.2x; older 5.x has only the old name.
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable({"use_reentrant": False})
    if cfg.train.compile:
        # In place, so parameter names stay as they are; per block under FSDP2, so that each
        # block's all-gather hooks stay outside the compiled graph.
        for module in decoder_blocks(model) if compile_per_block else [model]:
            module.compile()


def wrap_model(
    cfg: RunConfig,
    accelerator: Accelerator,
    strategy: Strategy,
    model: torch.nn.Module,
    build_optimizer: OptimizerFactory,
    plan: BatchPlan,
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """Precision, activation checkpointing, compile, distribution and optimizer, in that order,
    then the check that a launch asking for sharding got it."""
    apply_compute_options(cfg, model, compile_per_block=isinstance(strategy, FSDP2))
    accelerator.gradient_accumulation_steps = plan.grad_accum
    if isinstance(strategy, DeepSpeed):
        _check_deepspeed_parameters(model)
        _configure_deepspeed(accelerator, plan, cfg.optim.grad_clip, cfg.train.precision)
    model, optimizer = strategy.wrap(model, build_optimizer)
    check_sharded(strategy, strategy.report(model), accelerator.num_processes)
    return model, optimizer


def check_sharded(strategy: Strategy, report: dict, world_size: int) -> None:
    """A launch that asked for parameter sharding must have sharded parameters on this rank."""
    if not strategy.shards_parameters or world_size == 1:
        return
    if report["sharded_blocks"] < report["blocks"] or report["param_elements_local"] >= report["param_elements_total"]:
        raise ConfigError(
            f"the launch file asks for {strategy.name} over {world_size} processes, but this rank holds "
            f"{report['param_elements_local']} of {report['param_elements_total']} parameter elements, and "
            f"{report['sharded_blocks']} of {report['blocks']} decoder blocks are sharded: the model was not sharded."
        )


def describe(accelerator: Accelerator) -> dict:
    """What this process really got: logged so that tests and users can check the launch."""
    return {
        "world_size": accelerator.num_processes,
        "rank": accelerator.process_index,
        "local_rank": accelerator.local_process_index,
        "distributed_type": str(accelerator.distributed_type.value),
        "device": str(accelerator.device),
        "device_name": torch.cuda.get_device_name(accelerator.device) if accelerator.device.type == "cuda" else "cpu",
        "mixed_precision": accelerator.mixed_precision,
    }
