"""Streamed (``data.source=hf``) training batches, tokenized on the fly in background threads.

The stream is ``load_dataset(hf_name, hf_config, split=train_split, streaming=True)`` split per
rank with ``split_dataset_by_node``. Shuffling is done here, in windows: the next
``data.shuffle_buffer`` documents are read, permuted with ``default_rng([seed, rank, epoch,
window])`` and consumed in that order. Unlike ``IterableDataset.shuffle`` (whose buffer content
is lost on resume) this is exactly resumable with a small state:

    the dataset's own ``state_dict()`` at the start of the current window,
    epoch and window numbers, documents of the window already consumed,
    and (concat packing) the tokens left over after the last block.

A resume re-reads at most one window; nothing before it. The stream wraps around forever,
starting each epoch from the dataset's initial state with new window permutations.
"""

from __future__ import annotations

import copy
import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import torch

from ibnorm_llm.data.batches import STATE_FORMAT, TrainLoader, check_loader_state, make_batch
from ibnorm_llm.data.corpus import DataError, document_hash, open_hf_stream, split_of, stream_texts
from ibnorm_llm.data.packing import StreamPacker
from ibnorm_llm.data.tokenizer import encode_texts

if TYPE_CHECKING:
    from ibnorm_llm.config import RunConfig

_CHUNK_DOCS = 64  # documents per tokenizer call
_PREFETCH_BATCHES = 8


def _keep_for(split: str, data) -> callable:
    """Filter for the documents of ``split`` (train, validation or test) in the stream it is read from.

    Validation and test are carved out of data.train_split by hash unless they have dataset splits
    of their own (data.val_split, data.test_split); the train stream drops whatever is carved out.
    """
    val_fraction = 0.0 if data.val_split is not None else data.val_fraction
    test_fraction = 0.0 if data.test_split is not None else data.test_fraction
    if split != "train" and (data.val_split if split == "validation" else data.test_split) is not None:
        return lambda text: True  # a dataset split of its own: every document
    if val_fraction == 0 and test_fraction == 0:
        return lambda text: True
    return lambda text: split_of(document_hash(text), val_fraction, test_fraction) == split


class StreamTrainLoader(TrainLoader):
    """Training batches from a streamed dataset; see the module docstring for the resume scheme."""

    def __init__(self, cfg: RunConfig, tokenizer, *, rank: int, world_size: int):
        from datasets.distributed import split_dataset_by_node

        data = cfg.data
        self.data, self.tokenizer = data, tokenizer
        self.batch_size, self.seq_len = cfg.train.micro_batch_size, data.seq_len
        self.rank, self.world_size = rank, world_size
        self.dataset = split_dataset_by_node(open_hf_stream(data, data.train_split), rank=rank, world_size=world_size)
        self._keep = _keep_for("train", data)
        self.identity = {
            "dataset": f"{data.hf_name}|{data.hf_config}|{data.train_split}",
            "packing": data.packing,
            "seq_len": data.seq_len,
            "seed": data.shuffle_seed,
            "window_docs": data.shuffle_buffer,
            "batch_size": self.batch_size,
            "rank": rank,
            "world_size": world_size,
            "held_out": None if data.val_split is not None else data.val_fraction,
        }
        if data.test_fraction > 0:  # only then: checkpoints from before test splits existed still resume
            self.identity["test_fraction"] = data.test_fraction
        self._position = {
            "epoch": 0, "window": 0, "dataset_state": self.dataset.state_dict(), "consumed": 0, "carry": [],
        }
        self._initial_dataset_state = copy.deepcopy(self._position["dataset_state"])
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the producer ------------------------------------------------------------------

    def _windows(self, start: dict) -> Iterator[tuple[dict, list[str]]]:
        """(position at window start, the window's documents in shuffled order), forever."""
        epoch, window, dataset_state = start["epoch"], start["window"], start["dataset_state"]
        where = f"{self.data.hf_name} ({self.data.train_split})"
        while True:
            self.dataset.load_state_dict(copy.deepcopy(dataset_state))
            texts = stream_texts(self.dataset, self.data.text_field, where)
            produced_any = False
            while True:
                dataset_state = self.dataset.state_dict()
                docs = []
                for text in texts:
                    if self._keep(text):
                        docs.append(text)
                        if len(docs) == self.data.shuffle_buffer:
                            break
                if not docs:
                    break
                produced_any = True
                order = np.random.default_rng([self.data.shuffle_seed, self.rank, epoch, window]).permutation(len(docs))
                yield {"epoch": epoch, "window": window, "dataset_state": dataset_state}, [docs[i] for i in order]
                window += 1
            if not produced_any:
                raise DataError(
                    f"data.hf_name={self.data.hf_name!r} split {self.data.train_split!r} yields no documents for "
                    f"rank {self.rank} of {self.world_size}: check the dataset, data.text_field and data.val_fraction"
                )
            epoch, window, dataset_state = epoch + 1, 0, copy.deepcopy(self._initial_dataset_state)

    def _tokenized(self, docs: list[str], skip: int, pool: ThreadPoolExecutor) -> Iterator[list[int]]:
        """Token ids of docs[skip:], tokenized in chunks by the pool a few chunks ahead, in order."""
        chunks = [docs[i : i + _CHUNK_DOCS] for i in range(skip, len(docs), _CHUNK_DOCS)]
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.submit(encode_texts, self.tokenizer, chunk))
            if len(pending) > 2 * self.data.num_workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()

    def _batches(self, start: dict, pool: ThreadPoolExecutor) -> Iterator[tuple[dict, dict]]:
        """(batch, position after it), forever, from position ``start``."""
        packer = StreamPacker(self.data.packing, self.seq_len, self.tokenizer.eos_token_id,
                              self.tokenizer.pad_token_id, carry=start["carry"])
        pending: list[tuple[np.ndarray, int]] = []
        skip = start["consumed"]
        for window_start, docs in self._windows(start):
            consumed = skip
            for ids in self._tokenized(docs, skip, pool):
                consumed += 1
                pending.extend(packer.add(ids))
                while len(pending) >= self.batch_size:
                    rows, lengths = zip(*pending[: self.batch_size], strict=True)
                    pending = pending[self.batch_size :]
                    # Concat rows already cut but not yet batched go back in front of the carry:
                    # cutting them again on resume gives the same rows.
                    carry = [int(t) for row, _ in pending for t in row] + packer.carry
                    yield make_batch(np.stack(rows), np.asarray(lengths)), {
                        **window_start, "consumed": consumed, "carry": carry,
                    }
            skip = 0

    def _put(self, out: queue.Queue, item) -> bool:
        """Hand ``item`` to the consumer; False once the loader is being closed (never blocks forever)."""
        while not self._stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, start: dict, out: queue.Queue) -> None:
        try:
            with ThreadPoolExecutor(max_workers=self.data.num_workers, thread_name_prefix="ibnorm-tokenize") as pool:
                for item in self._batches(start, pool):
                    if not self._put(out, item):
                        return
        except BaseException as err:  # hand the error to the training loop
            self._put(out, err)

    # -- the TrainLoader interface -----------------------------------------------------

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._thread is None:
            self._queue = queue.Queue(maxsize=_PREFETCH_BATCHES)
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, args=(copy.deepcopy(self._position), self._queue), daemon=True,
                name="ibnorm-stream",
            )
            self._thread.start()
        item = self._queue.get()
        if isinstance(item, BaseException):
            self.close()
            raise item
        batch, self._position = item
        self.tokens_per_batch = int((batch["labels"] != -100).sum())
        return batch

    def state_dict(self) -> dict:
        return {"format": STATE_FORMAT, "kind": "stream", **self.identity, **copy.deepcopy(self._position)}

    def load_state_dict(self, state: dict) -> None:
        check_loader_state(state, "stream", self.identity)
        self.close()
        self._position = {k: copy.deepcopy(state[k]) for k in ("epoch", "window", "dataset_state", "consumed", "carry")}

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


def stream_validation_rows(
    cfg: RunConfig, tokenizer, n_rows: int, split: str = "validation"
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_rows`` rows of the streamed ``split`` (validation or test; all ranks read the same rows)."""
    data = cfg.data
    own = data.val_split if split == "validation" else data.test_split
    keep = _keep_for(split, data)
    split = own if own is not None else data.train_split
    texts = (t for t in stream_texts(open_hf_stream(data, split), data.text_field, f"{data.hf_name} ({split})")
             if keep(t))
    packer = StreamPacker(data.packing, data.seq_len, tokenizer.eos_token_id, tokenizer.pad_token_id)
    rows: list[tuple[np.ndarray, int]] = []
    for text in texts:
        rows.extend(packer.add(encode_texts(tokenizer, [text])[0]))
        if len(rows) >= n_rows:
            tokens, lengths = zip(*rows[:n_rows], strict=True)
            return np.stack(tokens), np.asarray(lengths)
    raise DataError(
        f"the held-out rows read from split {split!r} of data.hf_name={data.hf_name!r} has only {len(rows)} rows of "
        f"data.seq_len={data.seq_len} tokens, fewer than data.val_tokens={data.val_tokens} asks for: "
        f"lower data.val_tokens"
    )
