"""Held-out perplexity of a checkpoint on its own training corpus's validation split.

Uses the data pipeline's ``build_val_batches`` with the run's ``config.yaml``, so the rows are
exactly the ones the trainer evaluated on (same tokenizer, sequence length, held-out split and
``data.val_tokens``), and the trainer's own token-weighted loss
(:func:`ibnorm_llm.train.metrics.held_out_totals`).
"""

from __future__ import annotations

import math

import torch

from ibnorm_llm.config import RunConfig
from ibnorm_llm.data import DataError, build_val_batches
from ibnorm_llm.data.token_bytes import token_bytes
from ibnorm_llm.train.metrics import bits_per_byte, held_out_totals


def mean_loss(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], device: str) -> tuple[float, int]:
    """Token-weighted mean next-token loss over ``batches`` and the number of predicted tokens."""
    loss_sum, count = held_out_totals(model, batches, device).tolist()
    if count == 0:
        raise ValueError("held-out perplexity: the validation batches contain no target tokens")
    return loss_sum / count, int(count)


def held_out_perplexity(model: torch.nn.Module, tokenizer, config: RunConfig, device: str) -> dict[str, float | int]:
    """``{"loss", "ppl", "bpb", "tokens", "bytes"}`` on the run's validation rows (single process);
    bpb is bits per byte, loss * tokens / (ln 2 * bytes)."""
    try:
        batches = build_val_batches(config, tokenizer, rank=0, world_size=1)
    except DataError as err:
        raise DataError(f"held-out perplexity: {err} (or skip it with --no-perplexity)") from err
    loss_sum, count, n_bytes = held_out_totals(model, batches, device, token_bytes(tokenizer)).tolist()
    if count == 0:
        raise ValueError("held-out perplexity: the validation batches contain no target tokens")
    loss = loss_sum / count
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "bpb": bits_per_byte(loss, count, n_bytes),
            "tokens": int(count), "bytes": int(n_bytes)}
