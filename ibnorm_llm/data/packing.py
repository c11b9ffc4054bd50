"""Packing: how documents become fixed-length rows of ``seq_len`` tokens.

- ``concat``: documents, each followed by EOS, form one stream cut into ``seq_len`` blocks
  (the tail shorter than a block is dropped). Every token of a row is a real token.
- ``pad`` (the GaLore recipe): one document per row, EOS appended, truncated to ``seq_len`` and
  right-padded with the pad id; only the first ``length`` positions are real.

Rows are addressed by index, computed from the token shards on demand (no copy of the corpus):
a row is a pure function of its index, which is what makes exact resume index arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ibnorm_llm.data.shards import TokenShards


class ConcatRows:
    """Blocks of ``seq_len`` tokens of the stream ``doc[0] EOS doc[1] EOS ...`` over ``doc_ids``."""

    def __init__(self, shards: TokenShards, doc_ids: np.ndarray, seq_len: int, eos_id: int):
        self.shards, self.doc_ids, self.seq_len, self.eos_id = shards, doc_ids, seq_len, eos_id
        # Stream position where each document starts (its length + 1 for the EOS after it).
        self.starts = np.zeros(len(doc_ids) + 1, dtype=np.int64)
        np.cumsum(shards.lengths[doc_ids] + 1, out=self.starts[1:])
        self.n_rows = int(self.starts[-1] // seq_len)

    def row(self, index: int) -> tuple[np.ndarray, int]:
        """(tokens (seq_len,), number of real tokens) of block ``index``."""
        out = np.empty(self.seq_len, dtype=np.int64)
        cursor = index * self.seq_len
        d = int(np.searchsorted(self.starts, cursor, side="right")) - 1
        filled = 0
        while filled < self.seq_len:
            offset = cursor - int(self.starts[d])
            piece = self.shards.document(int(self.doc_ids[d]))[offset:]
            n = min(len(piece), self.seq_len - filled)
            out[filled : filled + n] = piece[:n]
            filled += n
            if filled < self.seq_len:
                out[filled] = self.eos_id
                filled += 1
            d += 1
            cursor = int(self.starts[d])
        return out, self.seq_len


class PadRows:
    """One row per document of ``doc_ids``: tokens + EOS, truncated to ``seq_len``, padded with ``pad_id``."""

    def __init__(self, shards: TokenShards, doc_ids: np.ndarray, seq_len: int, eos_id: int, pad_id: int):
        self.shards, self.doc_ids, self.seq_len = shards, doc_ids, seq_len
        self.eos_id, self.pad_id = eos_id, pad_id
        self.n_rows = len(doc_ids)

    def row(self, index: int) -> tuple[np.ndarray, int]:
        tokens = self.shards.document(int(self.doc_ids[index]))
        return pad_row(tokens, self.seq_len, self.eos_id, self.pad_id)


def pad_row(tokens: np.ndarray | list[int], seq_len: int, eos_id: int, pad_id: int) -> tuple[np.ndarray, int]:
    """One document as a padded row: (tokens + EOS)[:seq_len], then pad; returns (row, real length)."""
    out = np.full(seq_len, pad_id, dtype=np.int64)
    n = min(len(tokens), seq_len)
    out[:n] = tokens[:n]
    if n < seq_len:
        out[n] = eos_id
        n += 1
    return out, n


class StreamPacker:
    """Rows from documents that arrive one at a time (streamed data), for either packing.

    ``carry`` holds the concat tokens not yet in a row; it is the packer's whole state, so a
    resumed stream built with the saved ``carry`` continues mid-document with identical rows.
    """

    def __init__(self, packing: str, seq_len: int, eos_id: int, pad_id: int, carry: Iterable[int] = ()):
        self.packing, self.seq_len, self.eos_id, self.pad_id = packing, seq_len, eos_id, pad_id
        self.carry = list(carry)

    def add(self, ids: list[int]) -> list[tuple[np.ndarray, int]]:
        """The rows completed by one more document: (tokens (seq_len,), real length) each."""
        if self.packing == "pad":
            return [pad_row(ids, self.seq_len, self.eos_id, self.pad_id)]
        self.carry.extend(ids)
        self.carry.append(self.eos_id)
        n_rows = len(self.carry) // self.seq_len
        rows = np.asarray(self.carry[: n_rows * self.seq_len], dtype=np.int64).reshape(n_rows, self.seq_len)
        del self.carry[: n_rows * self.seq_len]
        return [(row, self.seq_len) for row in rows]
