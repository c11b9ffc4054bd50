"""Token shards: a local corpus tokenized once into on-disk memmaps, reused while nothing changed.

One directory per (corpus, tokenizer) pair under ``data.cache_dir``::

    <corpus>-<corpus fp[:16]>-<tokenizer fp[:16]>/
        tokens.bin        every document's tokens back to back (uint16, or uint32 for vocab > 65536)
        offsets.npy       int64 (n_documents + 1,): document i is tokens[offsets[i]:offsets[i+1]]
        doc_hashes.npy    uint64 (n_documents,): text hashes deciding the validation split
        manifest.json     fingerprints and counts; written last, so its presence means complete

Documents are stored without special tokens; packing adds EOS. The directory is built under a
file lock into a temporary sibling and renamed into place (:func:`build_dir_once`), so two ranks
starting together tokenize once, and an interrupted build never leaves a readable half.
"""

from __future__ import annotations

import json
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ibnorm_llm.data.atomic import build_dir_once
from ibnorm_llm.data.corpus import DataError, LocalCorpus, document_hash, held_out_threshold
from ibnorm_llm.data.tokenizer import encode_texts, tokenizer_fingerprint

SHARD_FORMAT = 1
_TOKENIZE_BATCH = 512  # documents per call of the (Rust, batched) tokenizer


@dataclass
class TokenShards:
    """A tokenized corpus on disk (memory-mapped; opening it reads nothing but the index)."""

    directory: Path
    manifest: dict
    tokens: np.ndarray
    offsets: np.ndarray
    doc_hashes: np.ndarray
    built: bool
    """True when this call tokenized the corpus, False when the cache was reused."""

    @property
    def n_documents(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def document(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index] : self.offsets[index + 1]]

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """(train, validation) document indices, each in corpus order; held-out by text hash."""
        held_out = self.doc_hashes < np.uint64(held_out_threshold(val_fraction))
        return np.flatnonzero(~held_out), np.flatnonzero(held_out)

    def split_ids(self, name: str, val_fraction: float, test_fraction: float) -> np.ndarray:
        """Document indices of split ``name`` (train, validation or test) in corpus order; the same
        rule as :func:`ibnorm_llm.data.corpus.split_of`."""
        validation = self.doc_hashes < np.uint64(held_out_threshold(val_fraction))
        test = ~validation & (self.doc_hashes < np.uint64(held_out_threshold(val_fraction + test_fraction)))
        if test_fraction <= 0:
            test[:] = False
        chosen = {"validation": validation, "test": test, "train": ~(validation | test)}[name]
        return np.flatnonzero(chosen)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def load_token_shards(corpus: LocalCorpus, tokenizer, cache_dir: str | Path) -> TokenShards:
    """The token shards of ``corpus`` under ``tokenizer``: reused when their manifest matches, else built."""
    tok_fp = tokenizer_fingerprint(tokenizer)
    expected = {
        "format": SHARD_FORMAT,
        "corpus": corpus.name,
        "corpus_fingerprint": corpus.fingerprint,
        "tokenizer_fingerprint": tok_fp,
    }
    directory = Path(cache_dir) / f"{corpus.name}-{corpus.fingerprint[:16]}-{tok_fp[:16]}"

    def is_complete(path: Path) -> bool:
        manifest = path / "manifest.json"
        if not manifest.is_file():
            return False
        found = json.loads(manifest.read_text())
        return all(found.get(k) == v for k, v in expected.items())

    built = build_dir_once(directory, lambda tmp: _write_shards(tmp, corpus, tokenizer, expected), is_complete)
    manifest = json.loads((directory / "manifest.json").read_text())
    tokens = np.memmap(directory / "tokens.bin", dtype=np.dtype(manifest["dtype"]), mode="r")
    if len(tokens) != manifest["n_tokens"]:
        raise DataError(f"{directory}: tokens.bin holds {len(tokens)} tokens, manifest says {manifest['n_tokens']}; "
                        f"delete the folder to rebuild it")
    return TokenShards(
        directory=directory,
        manifest=manifest,
        tokens=tokens,
        offsets=np.load(directory / "offsets.npy"),
        doc_hashes=np.load(directory / "doc_hashes.npy"),
        built=built,
    )


def _write_shards(out: Path, corpus: LocalCorpus, tokenizer, identity: dict) -> None:
    dtype = token_dtype(len(tokenizer))
    lengths = array("q")
    hashes = array("Q")
    n_tokens = 0

    with open(out / "tokens.bin", "wb") as sink:

        def flush(batch: list[str]) -> None:
            nonlocal n_tokens
            encoded = encode_texts(tokenizer, batch)
            for text, ids in zip(batch, encoded, strict=True):
                lengths.append(len(ids))
                hashes.append(document_hash(text))
                n_tokens += len(ids)
            if encoded:
                np.concatenate([np.asarray(ids, dtype=dtype) for ids in encoded]).tofile(sink)

        batch: list[str] = []
        for text in corpus.documents():
            batch.append(text)
            if len(batch) == _TOKENIZE_BATCH:
                flush(batch)
                batch = []
        flush(batch)

    if not lengths:
        raise DataError(f"the {corpus.name} corpus has no documents after dropping blank ones (data.source)")
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.frombuffer(lengths, dtype=np.int64), out=offsets[1:])
    np.save(out / "offsets.npy", offsets)
    np.save(out / "doc_hashes.npy", np.frombuffer(hashes, dtype=np.uint64))
    manifest = {
        **identity,
        "dtype": dtype.name,
        "vocab_size": len(tokenizer),
        "eos_token_id": tokenizer.eos_token_id,
        "n_documents": len(lengths),
        "n_tokens": int(n_tokens),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
