"""The one place that constructs the Accelerator, applies the precision policy and prepares.

accelerate does the distribution (DDP, FSDP2, DeepSpeed) from the launcher's config
file; this module adds what the trainer needs on top:

- CPU-only machines: ``Accelerator(cpu=True)``. Under ``accelerate launch`` with a
  MULTI_GPU/MULTI_CPU config and no CUDA, each spawned process would otherwise run ALONE
  (world size 1, every process "main"): ``use_cpu: true`` in the launcher's YAML does not
  reach the spawned processes, only ``ACCELERATE_USE_CPU=true`` or this argument does.
  With it, the processes form one gloo group with correct ranks. DeepSpeed launches are the
  exception: ``cpu=True`` turns DeepSpeed off, so there the gloo backend is named instead
  (otherwise accelerate reports world size 1 while DeepSpeed's group has every rank).
- Precision comes from ``train.precision`` only: ``fp32``; ``bf16-mixed`` (autocast,
  fp32 master weights); ``bf16-pure`` (the GaLore/paper recipe: the whole model cast to
  bf16, no fp32 copy). bf16 on a CPU is refused before any work: it is emulated and more
  than 100x slower than fp32 there.
- DeepSpeed reads micro batch, accumulation and clipping from its own config; they are
  set here from our batch plan so the two can never disagree.
"""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs

from ibnorm_llm.config import ConfigError, RunConfig
from ibnorm_llm.train.batching import BatchPlan

_AUTOCAST = {"fp32": "no", "bf16-mixed": "bf16", "bf16-pure": "no"}


def check_precision(cfg: RunConfig, cuda_available: bool) -> None:
    """Refuse settings that cannot run well here, before anything is built."""
    precision = cfg.train.precision
    if precision != "fp32" and not cuda_available:
        raise ConfigError(
            f"train.precision={precision} on a machine without a CUDA GPU: this CPU has no native bf16 units, "
            "so bf16 runs more than 100x slower than fp32. Use train.precision=fp32 on CPU (the *_tiny configs do); "
            "bf16-mixed and bf16-pure are for GPUs."
        )
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launcher not in ("no", _AUTOCAST[precision]):
        raise ConfigError(
            f"the accelerate launcher asks for mixed_precision={launcher}, but train.precision={precision}: "
            "precision is set by train.precision only. Leave the launcher's mixed_precision at 'no' "
            "(as launch/*.yaml do) and set train.precision=bf16-mixed or bf16-pure instead."
        )


def build_accelerator(cfg: RunConfig) -> Accelerator:
    """The Accelerator for this process (see the module docstring for the CPU rule)."""
    cuda = torch.cuda.is_available()
    check_precision(cfg, cuda)
    mixed = _AUTOCAST[cfg.train.precision]
    if cuda:
        accelerator = Accelerator(mixed_precision=mixed)
    elif os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        # cpu=True would switch DeepSpeed off; without a backend accelerate counts world size 1
        # while DeepSpeed's own group has all ranks. Naming gloo gives both the real group.
        accelerator = Accelerator(mixed_precision=mixed, kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])
    else:
        accelerator = Accelerator(cpu=True, mixed_precision=mixed)
    if cfg.train.skip_nonfinite and accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise ConfigError(
            "train.skip_nonfinite=true under DeepSpeed: the DeepSpeed engine applies the update inside backward, "
            "so a bad step cannot be skipped. Set train.skip_nonfinite=false (the run then stops on a non-finite "
            "loss or gradient) or launch with ddp/fsdp."
        )
    if cfg.train.precision == "bf16-pure" and accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise ConfigError(
            "train.precision=bf16-pure under DeepSpeed: DeepSpeed's bf16 mode keeps fp32 master weights, use "
            "train.precision=bf16-mixed with launch/deepspeed_zero*.yaml, or launch bf16-pure with ddp.yaml/fsdp.yaml."
        )
    return accelerator


def is_sharded(accelerator: Accelerator) -> bool:
    """True when optimizer (and maybe model) state is split across ranks (DeepSpeed, FSDP)."""
    return accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)


def prepare(
    accelerator: Accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer, plan: BatchPlan, grad_clip: float
):
    """Wrap model and optimizer for the launcher's strategy; returns (model, optimizer).

    The data loader is NOT prepared: ours already shards per rank and carries its own
    resumable state, and accelerate's wrapper would re-shard it.
    """
    accelerator.gradient_accumulation_steps = plan.grad_accum
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
        ds_config["train_micro_batch_size_per_gpu"] = plan.micro_batch_size
        ds_config["gradient_accumulation_steps"] = plan.grad_accum
        ds_config["train_batch_size"] = plan.global_batch_size
        ds_config["gradient_clipping"] = grad_clip
    return accelerator.prepare(model, optimizer)


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
