"""Where documents come from: the built-in corpus, local files, or a (hub or local) streamed dataset.

Local corpora (``builtin``, ``files``) are finite and read in a fixed order; they are tokenized
once into token shards (see :mod:`ibnorm_llm.data.shards`). ``hf`` datasets are streamed and
tokenized on the fly (see :mod:`ibnorm_llm.data.streaming`).

Held-out documents are chosen by a hash of their text (:func:`split_of`), not by position,
so the split is the same for every reader, rank, shuffle seed and file order, and a duplicated
document can never sit on two sides. Validation (``data.val_fraction``) serves model selection;
the optional test split (``data.test_fraction``) is never used for training or selection.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ibnorm_llm.data.builtin import builtin_corpus, builtin_corpus_fingerprint

if TYPE_CHECKING:
    from ibnorm_llm.config import DataConfig


class DataError(ValueError):
    """Bad data input (a file, a field, an empty corpus, a size): the message names it and the fix."""


FILE_BUILDERS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
"""File suffix -> the ``datasets`` packaged builder that reads it."""



def document_hash(text: str) -> int:
    """A stable 64-bit hash of a document's text (the same in every process and Python run)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def held_out_threshold(val_fraction: float) -> int:
    """Documents whose hash is below this are held out: a share ``val_fraction`` of all hashes."""
    return min(int(val_fraction * 2.0**64), 2**64 - 1)


def is_held_out(doc_hash: int, val_fraction: float) -> bool:
    """Whether a document with this hash belongs to the validation split."""
    return doc_hash < held_out_threshold(val_fraction)


def split_of(doc_hash: int, val_fraction: float, test_fraction: float) -> str:
    """The split a document with this hash belongs to: ``validation``, ``test`` or ``train``.

    Validation is the lowest ``val_fraction`` of hashes (unchanged by a test split, so adding
    one never moves a validation document); test is the next ``test_fraction``; the rest trains.
    """
    if doc_hash < held_out_threshold(val_fraction):
        return "validation"
    if test_fraction > 0 and doc_hash < held_out_threshold(val_fraction + test_fraction):
        return "test"
    return "train"


# --------------------------------------------------------------------------------------
# Local corpora


@dataclass(frozen=True)
class LocalCorpus:
    """A finite corpus read in a fixed order; ``fingerprint`` changes whenever its content may have."""

    name: str
    fingerprint: str
    data: DataConfig

    def documents(self) -> Iterator[str]:
        """Every non-blank document, in a fixed order. Raises DataError on bad files."""
        if self.name == "builtin":
            yield from builtin_corpus()
        else:
            for path in resolve_files(self.data):
                yield from read_file_documents(path, self.data)


def local_corpus(data: DataConfig) -> LocalCorpus:
    """The ``builtin`` or ``files`` corpus of a data config (checks that the files exist)."""
    if data.source == "builtin":
        return LocalCorpus("builtin", builtin_corpus_fingerprint(), data)
    if data.source == "files":
        return LocalCorpus("files", _files_fingerprint(data), data)
    raise DataError(f"data.source={data.source!r} is streamed, not a local corpus")


def resolve_files(data: DataConfig) -> list[Path]:
    """``data.files`` with globs expanded (sorted), each checked to exist, be non-empty and readable."""
    if not data.files:
        raise DataError("data.files is empty but data.source=files: list text/JSONL/Parquet paths or globs")
    paths: list[Path] = []
    for i, entry in enumerate(data.files):
        key = f"data.files[{i}]={entry!r}"
        if glob.has_magic(entry):
            matches = sorted(Path(p) for p in glob.glob(entry, recursive=True) if Path(p).is_file())
            if not matches:
                raise DataError(f"{key}: the pattern matches no file; check the path (relative to {Path.cwd()})")
        else:
            path = Path(entry).expanduser()
            if path.is_dir():
                raise DataError(f"{key} is a directory: give files or a glob such as '{entry.rstrip('/')}/*.jsonl'")
            if not path.is_file():
                raise DataError(f"{key}: file not found (relative paths are taken from {Path.cwd()})")
            matches = [path]
        for path in matches:
            if path.suffix.lower() not in FILE_BUILDERS:
                raise DataError(
                    f"{key}: {path} has an unsupported extension; use one of {', '.join(sorted(FILE_BUILDERS))}"
                )
            if path.stat().st_size == 0:
                raise DataError(f"{key}: {path} is empty; remove it from data.files or fill it")
        paths.extend(matches)
    return paths


def read_file_documents(path: Path, data: DataConfig) -> Iterator[str]:
    """The non-blank documents of one local file, read through ``datasets`` (streaming, no Arrow cache)."""
    from datasets import load_dataset

    builder = FILE_BUILDERS[path.suffix.lower()]
    options = {"sample_by": data.txt_sample_by} if builder == "text" else {}
    field = "text" if builder == "text" else data.text_field
    try:
        rows = load_dataset(builder, data_files=[str(path)], split="train", streaming=True, **options)
        found = 0
        for index, row in enumerate(rows):
            text = _text_of(row, field, f"{path} row {index}")
            if text.strip():
                found += 1
                yield text
    except DataError:
        raise
    except Exception as err:  # pyarrow/json parse errors: name the file
        raise DataError(f"{path}: could not be read as {builder} ({type(err).__name__}: {err})") from err
    if not found:
        raise DataError(f"{path}: contains no non-blank documents in field '{field}'; remove it from data.files")


def _text_of(row: dict, field: str, where: str) -> str:
    if field not in row:
        raise DataError(
            f"{where}: no field '{field}' (data.text_field); fields present: {', '.join(map(str, row)) or 'none'}. "
            f"Set data.text_field to the one holding the text."
        )
    text = row[field]
    if not isinstance(text, str):
        raise DataError(f"{where}: field '{field}' holds {type(text).__name__}, not text (data.text_field)")
    return text


def _files_fingerprint(data: DataConfig) -> str:
    # Path, size and modification time: cheap, and any edit of a file changes it.
    digest = hashlib.sha256(f"files-v1|{data.text_field}|{data.txt_sample_by}".encode())
    for path in resolve_files(data):
        stat = path.stat()
        digest.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# Streamed datasets


def open_hf_stream(data: DataConfig, split: str):
    """``datasets.load_dataset(data.hf_name, data.hf_config, split=split, streaming=True)``.

    ``data.hf_name`` is a hub dataset (e.g. ``allenai/c4``) or a local dataset directory with
    the same layout. Errors name the key to fix.
    """
    from datasets import load_dataset

    try:
        return load_dataset(data.hf_name, data.hf_config, split=split, streaming=True)
    except Exception as err:
        raise DataError(
            f"could not open dataset data.hf_name={data.hf_name!r} (data.hf_config={data.hf_config!r}, "
            f"split {split!r}): {type(err).__name__}: {err}. Offline, point data.hf_name at a local copy "
            f"or use data.source=files/builtin."
        ) from err


def stream_texts(rows, field: str, where: str) -> Iterator[str]:
    """Texts of a streamed dataset's rows (blank ones skipped); a missing field is a DataError."""
    for index, row in enumerate(rows):
        text = _text_of(row, field, f"{where} row {index}")
        if text.strip():
            yield text
