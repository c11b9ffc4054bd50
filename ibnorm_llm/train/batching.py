"""Global batch -> gradient accumulation, from the world size and the micro batch."""

from __future__ import annotations

from dataclasses import dataclass

from ibnorm_llm.config import ConfigError, TrainConfig


@dataclass(frozen=True)
class BatchPlan:
    micro_batch_size: int
    """Sequences per device per forward pass."""
    grad_accum: int
    """Micro steps per optimizer step on each device."""
    world_size: int
    seq_len: int

    @property
    def global_batch_size(self) -> int:
        """Sequences per optimizer step across all devices."""
        return self.micro_batch_size * self.grad_accum * self.world_size

    @property
    def tokens_per_step(self) -> int:
        """Token positions per optimizer step (pad positions included)."""
        return self.global_batch_size * self.seq_len


def plan_batches(cfg: TrainConfig, seq_len: int, world_size: int) -> BatchPlan:
    """Derive gradient accumulation so that micro * accum * world = the global batch.

    Neither ``global_batch_size`` nor ``global_batch_tokens`` set: one micro batch per device.
    """
    micro = cfg.micro_batch_size
    per_micro_step = micro * world_size
    if cfg.global_batch_tokens is not None:
        if cfg.global_batch_tokens % seq_len:
            raise ConfigError(
                f"train.global_batch_tokens={cfg.global_batch_tokens} is not a multiple of data.seq_len={seq_len}: "
                f"use a multiple such as {max(1, cfg.global_batch_tokens // seq_len) * seq_len}, "
                "or set train.global_batch_size in sequences instead"
            )
        global_seqs, key = cfg.global_batch_tokens // seq_len, "train.global_batch_tokens"
    elif cfg.global_batch_size is not None:
        global_seqs, key = cfg.global_batch_size, "train.global_batch_size"
    else:
        return BatchPlan(micro, 1, world_size, seq_len)
    if global_seqs % per_micro_step:
        valid = [m for m in range(1, min(global_seqs, 4096) + 1) if global_seqs % (m * world_size) == 0]
        raise ConfigError(
            f"{key}: {global_seqs} sequences per step is not divisible by train.micro_batch_size={micro} x "
            f"world size {world_size} = {per_micro_step}. With {world_size} process(es), valid "
            f"train.micro_batch_size values are {valid[-8:] or 'none'}; or pick a global batch that is a multiple of "
            f"{per_micro_step} sequences"
        )
    return BatchPlan(micro, global_seqs // per_micro_step, world_size, seq_len)


def batch_source(cfg: TrainConfig) -> str:
    """What fixes the global batch (recorded in run.json): a config key, or the process count."""
    if cfg.global_batch_tokens is not None:
        return "train.global_batch_tokens"
    if cfg.global_batch_size is not None:
        return "train.global_batch_size"
    return "train.micro_batch_size x world size"


def batch_notice(cfg: TrainConfig, plan: BatchPlan) -> str | None:
    """A line for launches whose global batch follows from the process count (neither
    train.global_batch_size nor train.global_batch_tokens set, more than one process)."""
    if plan.world_size == 1 or cfg.global_batch_size is not None or cfg.global_batch_tokens is not None:
        return None
    return (
        f"global batch: {plan.global_batch_size} sequences ({plan.tokens_per_step} tokens) per step = "
        f"train.micro_batch_size={plan.micro_batch_size} x {plan.world_size} processes; it changes with the process "
        f"count: set train.global_batch_size={plan.global_batch_size} to keep it fixed"
    )
