"""What every training loader shares: the batch format and the checkpointable-position contract.

:class:`ShardTrainLoader` (local corpora, ``loader.py``) and :class:`StreamTrainLoader` (``source=hf``,
``streaming.py``) both implement :class:`TrainLoader`, build batches with :func:`make_batch` and check a
saved position with :func:`check_loader_state`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from ibnorm_llm.data.corpus import DataError

IGNORE_INDEX = -100
"""Label of positions excluded from the loss (padding)."""
STATE_FORMAT = 1


def make_batch(rows: np.ndarray, lengths: np.ndarray) -> dict[str, torch.Tensor]:
    """(B, T) token rows and their real lengths -> input_ids and labels with padding set to -100.

    Padding is masked by position, not by id, so a pad id equal to EOS (gpt2) keeps real EOS labels.
    HF causal LMs shift labels inside the model, so labels equal input_ids here.
    """
    input_ids = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))
    labels = input_ids.clone()
    padding = torch.arange(rows.shape[1])[None, :] >= torch.from_numpy(np.asarray(lengths))[:, None]  # (B, T)
    labels[padding] = IGNORE_INDEX
    return {"input_ids": input_ids, "labels": labels}


class TrainLoader(ABC):
    """An infinite iterator of training micro batches with a checkpointable position.

    ``state_dict()`` describes the position after the last batch returned; after
    ``load_state_dict(state)`` the loader yields exactly the batches an uninterrupted loader would
    have yielded next. Save one state per rank: for streamed data each rank's state differs.
    """

    batch_size: int
    seq_len: int
    tokens_per_batch: int = 0
    """Real (non-pad) tokens in the last batch returned."""

    def __iter__(self) -> TrainLoader:
        return self

    @abstractmethod
    def __next__(self) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def state_dict(self) -> dict: ...

    @abstractmethod
    def load_state_dict(self, state: dict) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Stop background work and release memory; the loader may not be used afterwards."""


def check_loader_state(state: dict, kind: str, identity: dict) -> None:
    """Refuse a saved loader position from another kind of loader or from other data."""
    if state.get("format") != STATE_FORMAT or state.get("kind") != kind:
        raise DataError(
            f"data loader state is for a {state.get('kind')!r} loader (format {state.get('format')}), "
            f"this run uses a {kind!r} loader (format {STATE_FORMAT}): resume with the data.* settings of "
            f"that run, or start without its loader state"
        )
    changed = [f"{k}: saved {state.get(k)!r}, now {v!r}" for k, v in identity.items() if state.get(k) != v]
    if changed:
        raise DataError(
            "the data changed since the checkpoint, so its loader position means other batches now ("
            + "; ".join(changed) + "). Resume with the same data.* and tokenizer.* settings"
        )
