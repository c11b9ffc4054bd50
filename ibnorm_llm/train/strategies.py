"""How the model is spread over the ranks: one class per strategy, all with the same methods.

The trainer and the checkpoint code call these methods and never ask which strategy runs:

- ``Replicated``: one process, or DDP through ``accelerator.prepare``; every rank holds the
  whole model, rank 0 writes the optimizer state to ``optimizer.pt``.
- ``DeepSpeed``: ZeRO-2/3 through ``accelerator.prepare`` (accelerate's DeepSpeed plugin from
  the launch file); the engine's sharded state goes through ``accelerator.save_state``.
- ``FSDP2``: torch's ``fully_shard`` per decoder block, then the root (as torchtitan does);
  applied here rather than by accelerate, whose FSDP does not engage on CPU processes, so CPU
  and GPU launches run the same code. Sharded model and optimizer state are saved with
  torch.distributed.checkpoint (DCP), each rank writing its own shard.

Every strategy also writes the full model into the checkpoint's Hugging Face directory
(``full_state_dict``, gathered on the main process).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from ibnorm_llm.config import ConfigError
from ibnorm_llm.train.checkpoint import load_model_weights

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder blocks (LLaMA ``model.layers``, GPT-2 ``transformer.h``),
    found as the one ModuleList with ``config.num_hidden_layers`` entries, so that any model
    family or norm placement works without naming block classes."""
    n_layers = model.config.num_hidden_layers
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n_layers]
    if len(lists) != 1:
        raise ValueError(
            f"{type(model).__name__}: expected exactly one ModuleList of {n_layers} decoder blocks, found {len(lists)}"
        )
    return lists[0]


def refuse_post_optimizer_step(model: nn.Module, strategy: str) -> None:
    """A clear error for a model that must change its weights after every optimizer step (nGPT's
    re-normalization, ``post_optimizer_step``) under a strategy whose ranks each hold a shard."""
    if getattr(model, "requires_post_optimizer_step", False):
        raise ConfigError(
            f"model.architecture=ngpt re-normalizes its weight matrices after every optimizer step, which is "
            f"not supported under {strategy} (parameters split across ranks): train it in one process or "
            "with DDP (launch/ddp.yaml, launch/ddp_cpu.yaml)"
        )


def _is_sharded(param: torch.Tensor) -> bool:
    return hasattr(param, "to_local") or hasattr(param, "ds_tensor")  # an FSDP2 DTensor / a ZeRO-3 partition


def parameter_share(model: nn.Module) -> dict[str, int]:
    """Parameter elements this rank stores against the model's total, how many parameters are
    split across ranks, and in how many decoder blocks every parameter of at least one dimension
    is split (0-d ones stay whole under FSDP2). Tied parameters count once."""
    local = total = sharded = 0
    for param in model.parameters():
        if hasattr(param, "to_local"):  # FSDP2: a DTensor holding this rank's shard
            local, total, sharded = local + param.to_local().numel(), total + param.numel(), sharded + 1
        elif hasattr(param, "ds_tensor"):  # ZeRO-3: ds_tensor is this rank's (padded) partition
            local, total, sharded = local + param.ds_tensor.numel(), total + param.ds_numel, sharded + 1
        else:
            local, total = local + param.numel(), total + param.numel()
    blocks = decoder_blocks(model)
    sharded_blocks = sum(all(_is_sharded(p) for p in block.parameters() if p.dim() > 0) for block in blocks)
    return {"param_elements_local": local, "param_elements_total": total, "sharded_params": sharded,
            "sharded_blocks": sharded_blocks, "blocks": len(blocks)}


class Replicated:
    """Single process or DDP: the whole model on every rank."""

    state_format = "replicated"
    shards_parameters = False
    """True when a forward needs every rank (parameters split across ranks)."""
    exposes_gradients = True
    """True when parameters' ``.grad`` hold the step's gradients between backward and optimizer step
    (not under DeepSpeed, whose engine keeps them in its own partitions)."""

    def __init__(self, accelerator, name: str):
        self.accelerator = accelerator
        self.name = name

    def wrap(self, model: nn.Module, build_optimizer: OptimizerFactory) -> tuple[nn.Module, torch.optim.Optimizer]:
        return self.accelerator.prepare(model, build_optimizer(model))

    def after_optimizer_step(self, model: nn.Module) -> None:
        """The model's own ``post_optimizer_step`` where it has one (nGPT: matrices back on the sphere).
        Replicated: every rank holds the same updated weights and changes them the same way."""
        step = getattr(self.plain_model(model), "post_optimizer_step", None)
        if step is not None:
            step()

    @contextlib.contextmanager
    def micro_step(self, model: nn.Module, last: bool) -> Iterator[None]:
        """One micro batch's forward and backward; gradients are reduced across ranks on the last only."""
        with self.accelerator.accumulate(model):
            yield

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> torch.Tensor | None:
        return self.accelerator.clip_grad_norm_(model.parameters(), max_norm)

    def plain_model(self, model: nn.Module) -> nn.Module:
        """The model without DDP/DeepSpeed wrappers (parameters still sharded under FSDP2/ZeRO-3)."""
        return self.accelerator.unwrap_model(model)

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Every weight, whole, on the main process (a collective: every rank calls it)."""
        return self.accelerator.get_state_dict(model)

    def save_state(self, model: nn.Module, optimizer, state_dir: Path) -> None:
        if self.accelerator.is_main_process:
            torch.save(optimizer.state_dict(), state_dir / "optimizer.pt")

    def load_state(self, model: nn.Module, optimizer, checkpoint: Path, state_dir: Path) -> None:
        load_model_weights(self.plain_model(model), checkpoint)
        optimizer.load_state_dict(torch.load(state_dir / "optimizer.pt", weights_only=False))

    def report(self, model: nn.Module) -> dict:
        return {"sharding": self.name, **parameter_share(self.plain_model(model))}


class DeepSpeed(Replicated):
    """ZeRO-2/3 through accelerate: the engine steps inside backward and owns its sharded state."""

    exposes_gradients = False

    def __init__(self, accelerator, stage: int):
        super().__init__(accelerator, f"zero{stage}")
        self.state_format = f"deepspeed-zero{stage}"
        self.shards_parameters = stage == 3

    def wrap(self, model: nn.Module, build_optimizer: OptimizerFactory) -> tuple[nn.Module, torch.optim.Optimizer]:
        refuse_post_optimizer_step(model, f"DeepSpeed ZeRO-{self.state_format[-1]}")
        return super().wrap(model, build_optimizer)

    def save_state(self, model: nn.Module, optimizer, state_dir: Path) -> None:
        self.accelerator.save_state(str(state_dir / "accelerate"))

    def load_state(self, model: nn.Module, optimizer, checkpoint: Path, state_dir: Path) -> None:
        self.accelerator.load_state(str(state_dir / "accelerate"))


class FSDP2(Replicated):
    """torch's fully_shard: each decoder block, then the root, one shard of every parameter per rank."""

    state_format = "fsdp2-dcp"
    shards_parameters = True

    def __init__(self, accelerator, *, reshard_after_forward: bool, param_dtype: torch.dtype | None):
        super().__init__(accelerator, "fsdp2")
        self.reshard_after_forward = reshard_after_forward
        self.param_dtype = param_dtype

    def wrap(self, model: nn.Module, build_optimizer: OptimizerFactory) -> tuple[nn.Module, torch.optim.Optimizer]:
        refuse_post_optimizer_step(model, "FSDP2")
        device = self.accelerator.device
        mesh = init_device_mesh(device.type, (self.accelerator.num_processes,))
        # Gradients are reduced in fp32 whatever the compute dtype: a bf16 sum over ranks loses bits.
        policy = MixedPrecisionPolicy(param_dtype=self.param_dtype, reduce_dtype=torch.float32)
        # fully_shard cannot split 0-d parameters (a learnable IBNorm lambda, DyT's alpha): they
        # stay whole on every rank and their gradients are averaged in micro_step.
        self.replicated = [p for p in model.parameters() if p.dim() == 0]
        shard = {"mesh": mesh, "mp_policy": policy, "ignored_params": set(self.replicated)}
        model.to(device)
        for block in decoder_blocks(model):
            fully_shard(block, reshard_after_forward=self.reshard_after_forward, **shard)
        # The root keeps the embeddings, final norm and head; no reshard after its forward, as the
        # backward needs them at once.
        fully_shard(model, reshard_after_forward=False, **shard)
        return model, build_optimizer(model)

    @contextlib.contextmanager
    def micro_step(self, model: nn.Module, last: bool) -> Iterator[None]:
        model.set_requires_gradient_sync(last)  # reduce-scatter once per optimizer step
        yield
        grads = [p.grad for p in self.replicated if p.grad is not None]
        if last and grads:
            summed = torch.stack(grads)
            torch.distributed.all_reduce(summed)
            torch._foreach_copy_(grads, list(summed.div_(self.accelerator.num_processes).unbind()))

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> torch.Tensor:
        """torch.nn.utils.clip_grad_norm_'s rule over sharded (DTensor) and replicated gradients together."""
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        sharded = [g for g in grads if hasattr(g, "full_tensor")]
        replicated = [g for g in grads if not hasattr(g, "full_tensor")]
        squares = torch.zeros((), device=self.accelerator.device)
        if sharded:
            squares += torch.nn.utils.get_total_norm(sharded).full_tensor() ** 2
        if replicated:
            squares += torch.nn.utils.get_total_norm(replicated) ** 2
        total = squares.sqrt()
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        torch._foreach_mul_([g.to_local() if hasattr(g, "to_local") else g for g in grads], coef)
        return total

    def plain_model(self, model: nn.Module) -> nn.Module:
        return model

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def _sharded_state(self, model: nn.Module, optimizer) -> dict:
        return {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, optimizer)}

    def save_state(self, model: nn.Module, optimizer, state_dir: Path) -> None:
        dcp.save(self._sharded_state(model, optimizer), checkpoint_id=state_dir / "fsdp2")

    def load_state(self, model: nn.Module, optimizer, checkpoint: Path, state_dir: Path) -> None:
        # get_optimizer_state_dict creates the optimizer's lazy state first, so DCP has
        # every tensor to load into (in place, each rank its own shard).
        state = self._sharded_state(model, optimizer)
        dcp.load(state, checkpoint_id=state_dir / "fsdp2")
        set_model_state_dict(model, state["model"])
        set_optimizer_state_dict(model, optimizer, state["optimizer"])


Strategy = Replicated | DeepSpeed | FSDP2
