"""Held-out perplexity of a checkpoint on its own training corpus's validation split.

Uses the data pipeline's ``build_val_batches`` with the run's ``config.yaml``, so the rows are
exactly the ones the trainer evaluated on (same tokenizer, sequence length, held-out split and
``data.val_tokens``), and the same token-weighted mean as the trainer's evaluation.
"""

from __future__ import annotations

import math

import torch

from ibnorm_llm.config import RunConfig
from ibnorm_llm.data.loader import IGNORE_INDEX


@torch.no_grad()
def mean_loss(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], device: str) -> tuple[float, int]:
    """Token-weighted mean next-token loss over ``batches`` and the number of predicted tokens."""
    model.eval()
    loss_sum, count = 0.0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        n_targets = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())  # the model shifts labels by one
        loss_sum += float(model(**batch).loss.double()) * n_targets
        count += n_targets
    if count == 0:
        raise ValueError("held-out perplexity: the validation batches contain no target tokens")
    return loss_sum / count, count


def held_out_perplexity(model: torch.nn.Module, tokenizer, config: RunConfig, device: str) -> dict[str, float | int]:
    """``{"loss", "ppl", "tokens"}`` on the run's validation rows (single process)."""
    from ibnorm_llm.data import DataError, build_val_batches

    try:
        batches = build_val_batches(config, tokenizer, rank=0, world_size=1)
    except DataError as err:
        raise DataError(f"held-out perplexity: {err} (or skip it with --no-perplexity)") from err
    loss, tokens = mean_loss(model, batches, device)
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "tokens": tokens}
