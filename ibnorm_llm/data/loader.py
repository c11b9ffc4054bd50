"""Training and validation batches: the public entry points of the data pipeline.

    tokenizer = load_tokenizer(cfg)
    check_data_config(cfg, tokenizer, max_positions=model.config.max_position_embeddings)
    loader = build_train_loader(cfg, tokenizer, rank=rank, world_size=world_size)
    batch = next(loader)                     # {"input_ids": (B, T), "labels": (B, T)}
    state = loader.state_dict()              # into the checkpoint, per rank
    loader.load_state_dict(state)            # the next batch is the one an uninterrupted run sees

Local and built-in corpora go through token shards and :class:`ShardTrainLoader` (pure index
arithmetic over a per-epoch permutation of rows); ``source=hf`` goes through
:class:`ibnorm_llm.data.streaming.StreamTrainLoader`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ibnorm_llm.data.batches import IGNORE_INDEX, STATE_FORMAT, TrainLoader, check_loader_state, make_batch
from ibnorm_llm.data.corpus import DataError, local_corpus
from ibnorm_llm.data.packing import ConcatRows, PadRows
from ibnorm_llm.data.shards import TokenShards, load_token_shards
from ibnorm_llm.data.streaming import StreamTrainLoader, stream_validation_rows

if TYPE_CHECKING:
    from ibnorm_llm.config import RunConfig

__all__ = [
    "IGNORE_INDEX", "ShardTrainLoader", "TrainLoader", "build_train_loader", "build_val_batches", "make_batch",
    "validation_row_count",
]


class ShardTrainLoader(TrainLoader):
    """Batches of rows of a local corpus, shuffled per epoch, strided across ranks.

    Rows are visited in a global order: epoch ``e`` is the permutation
    ``default_rng([seed, e]).permutation(n_rows)``, and global position ``p`` is row
    ``perm[e][p % n_rows]`` with ``e = p // n_rows``. Rank ``r`` of ``W`` takes positions
    ``position + j * W + r`` for ``j < batch_size`` and then every rank advances ``position`` by
    ``batch_size * W``. So ranks never share a row within an epoch, epochs wrap forever with a
    fresh shuffle, and the whole state is one integer that is the same on every rank (a run may
    even resume with another world size: it continues from the same global position).
    """

    def __init__(self, rows: ConcatRows | PadRows, *, batch_size: int, rank: int, world_size: int, seed: int,
                 identity: dict):
        self.rows, self.batch_size, self.seq_len = rows, batch_size, rows.seq_len
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.identity = identity
        self.position = 0
        self._permutations: dict[int, np.ndarray] = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            if len(self._permutations) >= 2:  # a batch spans at most two epochs
                self._permutations.pop(min(self._permutations))
            self._permutations[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.rows.n_rows)
        return self._permutations[epoch]

    def row_indices(self, position: int) -> list[int]:
        """Row ids of this rank's batch that starts at global ``position``."""
        indices = []
        for j in range(self.batch_size):
            epoch, offset = divmod(position + j * self.world_size + self.rank, self.rows.n_rows)
            indices.append(int(self._permutation(epoch)[offset]))
        return indices

    def __next__(self) -> dict[str, torch.Tensor]:
        rows, lengths = zip(*(self.rows.row(i) for i in self.row_indices(self.position)), strict=True)
        self.position += self.batch_size * self.world_size
        self.tokens_per_batch = int(sum(lengths))
        return make_batch(np.stack(rows), np.asarray(lengths))

    def state_dict(self) -> dict:
        return {"format": STATE_FORMAT, "kind": "shards", "position": self.position, **self.identity}

    def load_state_dict(self, state: dict) -> None:
        check_loader_state(state, "shards", self.identity)
        self.position = int(state["position"])

    def close(self) -> None:
        self._permutations.clear()


# --------------------------------------------------------------------------------------
# Builders


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank}, world_size={world_size}: need 0 <= rank < world_size")


def _local_rows(cfg: RunConfig, tokenizer, split: str) -> tuple[TokenShards, ConcatRows | PadRows]:
    data = cfg.data
    shards = load_token_shards(local_corpus(data), tokenizer, data.cache_dir)
    doc_ids = shards.split_ids(split, data.val_fraction, data.test_fraction)
    if len(doc_ids) == 0:
        raise DataError(
            f"the {split} split of the {shards.manifest['corpus']} corpus is empty "
            f"({shards.n_documents} documents, data.val_fraction={data.val_fraction}, "
            f"data.test_fraction={data.test_fraction}): add documents or change those fractions"
        )
    if data.packing == "concat":
        return shards, ConcatRows(shards, doc_ids, data.seq_len, tokenizer.eos_token_id)
    return shards, PadRows(shards, doc_ids, data.seq_len, tokenizer.eos_token_id, tokenizer.pad_token_id)


def build_train_loader(cfg: RunConfig, tokenizer, *, rank: int, world_size: int) -> TrainLoader:
    """Training micro batches for this rank: {"input_ids", "labels"} of shape (micro_batch_size, seq_len).

    Bad data (missing/empty files, a missing text field, an empty corpus, too little data for one
    batch per rank) raises DataError here, before any training step.
    """
    _check_rank(rank, world_size)
    if cfg.data.source == "hf":
        return StreamTrainLoader(cfg, tokenizer, rank=rank, world_size=world_size)
    shards, rows = _local_rows(cfg, tokenizer, "train")
    per_step = cfg.train.micro_batch_size * world_size
    if rows.n_rows < per_step:
        raise DataError(
            f"the training split has {rows.n_rows} rows of data.seq_len={cfg.data.seq_len} tokens, fewer than one "
            f"micro batch per rank ({cfg.train.micro_batch_size} x {world_size} ranks): use more data, a smaller "
            f"data.seq_len or a smaller train.micro_batch_size"
        )
    identity = {
        "shards": shards.directory.name,
        "packing": cfg.data.packing,
        "seq_len": cfg.data.seq_len,
        "val_fraction": cfg.data.val_fraction,
        "seed": cfg.data.shuffle_seed,
    }
    if cfg.data.test_fraction > 0:  # only then: checkpoints from before test splits existed still resume
        identity["test_fraction"] = cfg.data.test_fraction
    return ShardTrainLoader(
        rows, batch_size=cfg.train.micro_batch_size, rank=rank, world_size=world_size,
        seed=cfg.data.shuffle_seed, identity=identity,
    )


def validation_row_count(cfg: RunConfig, world_size: int) -> int:
    """Rows of held-out data in total: data.val_tokens // seq_len, rounded down to a multiple of world_size."""
    n_rows = cfg.data.val_tokens // cfg.data.seq_len
    n_rows -= n_rows % world_size
    if n_rows == 0:
        raise DataError(
            f"data.val_tokens={cfg.data.val_tokens} gives no validation row of data.seq_len={cfg.data.seq_len} "
            f"tokens per rank ({world_size} ranks): raise data.val_tokens to at least "
            f"{cfg.data.seq_len * world_size}"
        )
    return n_rows


HELD_OUT_SPLITS = ("validation", "test")


def _get_fraction(cfg: RunConfig, split: str) -> float:
    return cfg.data.val_fraction if split == "validation" else cfg.data.test_fraction


def build_val_batches(
    cfg: RunConfig, tokenizer, *, rank: int, world_size: int, split: str = "validation"
) -> list[dict[str, torch.Tensor]]:
    """The held-out batches of this rank: the first val_tokens // seq_len rows of ``split``
    (``validation``, or ``test`` when the data has a test split; both hold data.val_tokens).

    Deterministic (no shuffle), the same rows for every run with these settings; rows are dealt
    round-robin to ranks (every rank gets the same count) and batched by train.micro_batch_size
    (the last batch may be smaller).
    """
    _check_rank(rank, world_size)
    if split not in HELD_OUT_SPLITS:
        raise ValueError(f"split={split!r}: held-out batches come from {' or '.join(HELD_OUT_SPLITS)}")
    if split == "test" and cfg.data.test_fraction == 0 and cfg.data.test_split is None:
        raise DataError("no test split: set data.test_fraction (or, with data.source=hf, data.test_split)")
    n_rows = validation_row_count(cfg, world_size)
    if cfg.data.source == "hf":
        rows, lengths = stream_validation_rows(cfg, tokenizer, n_rows, split=split)
    else:
        _, source = _local_rows(cfg, tokenizer, split)
        if source.n_rows < n_rows:
            fraction = "data.val_fraction" if split == "validation" else "data.test_fraction"
            raise DataError(
                f"data.val_tokens={cfg.data.val_tokens} needs {n_rows} {split} rows of {cfg.data.seq_len} tokens "
                f"but the held-out {split} split ({fraction}={_get_fraction(cfg, split)}) has only {source.n_rows}: "
                f"lower data.val_tokens to {source.n_rows * cfg.data.seq_len} or raise {fraction}"
            )
        built = [source.row(i) for i in range(n_rows)]
        rows = np.stack([r for r, _ in built])
        lengths = np.asarray([n for _, n in built])
    mine = np.arange(rank, n_rows, world_size)
    size = cfg.train.micro_batch_size
    return [make_batch(rows[mine[i : i + size]], lengths[mine[i : i + size]]) for i in range(0, len(mine), size)]
