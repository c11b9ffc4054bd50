"""The built-in offline corpus: English prose from the documentation Python ships with itself.

Two sources, both present in every CPython install and needing no network:

- ``pydoc_data.topics``: the language reference sections ``help()`` shows (statements,
  operators, data model ...), split into chunks of whole paragraphs;
- the docstrings of the standard library's modules, classes and functions, read with ``ast``
  from the ``.py`` sources (nothing is imported, so no module side effects).

Code is filtered out paragraph by paragraph (indented blocks, doctests, grammar rules and
anything with few letters), and documents with too few words or seen before are dropped, so what remains
is documentation prose written by people. The result depends only on the Python installation,
so it is deterministic for a given interpreter; :func:`builtin_corpus_fingerprint` identifies it
from file metadata alone, so reusing cached token shards costs no parsing.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

MIN_WORDS = 30
"""Documents with fewer words after filtering are dropped (one-line docstrings say little)."""
MIN_LETTER_SHARE = 0.7
"""A paragraph is prose when at least this share of its non-space characters are letters."""
TOPIC_CHUNK_CHARS = 2000
"""Reference topics are cut into chunks of whole paragraphs of about this size."""
_SKIPPED_STDLIB_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo"}
_FORMAT_VERSION = "builtin-corpus-v2"  # bump whenever the extraction or filters change: shards are keyed on it


def _is_prose(paragraph: str) -> bool:
    first = paragraph.lstrip("\n")
    if not first or first[0].isspace() or first.startswith((">>>", "...", "::")):
        return False
    visible = [c for c in paragraph if not c.isspace()]
    letters = sum(c.isalpha() for c in visible)
    return letters >= MIN_LETTER_SHARE * len(visible)


def _prose_paragraphs(text: str) -> list[str]:
    paragraphs = [p.strip("\n") for p in text.replace("\r\n", "\n").split("\n\n")]
    return [p for p in paragraphs if p.strip() and _is_prose(p)]


def _enough_words(document: str) -> bool:
    return len(document.split()) >= MIN_WORDS


def _topic_documents() -> list[str]:
    from pydoc_data.topics import topics

    documents = []
    for name in sorted(topics):
        chunk: list[str] = []
        size = 0
        for paragraph in _prose_paragraphs(topics[name]):
            chunk.append(paragraph)
            size += len(paragraph)
            if size >= TOPIC_CHUNK_CHARS:
                documents.append("\n\n".join(chunk))
                chunk, size = [], 0
        if chunk:
            documents.append("\n\n".join(chunk))
    return [d for d in documents if _enough_words(d)]


def _stdlib_sources() -> list[Path]:
    """The standard library's .py files in a fixed order, skipping tests, tools and installed packages."""
    root = sysconfig.get_paths()["stdlib"]
    sources = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in _SKIPPED_STDLIB_DIRS)
        sources.extend(Path(folder) / f for f in sorted(files) if f.endswith(".py"))
    return sources


def _docstring_documents() -> list[str]:
    documents = []
    for path in _stdlib_sources():
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # a few stdlib files are deliberately invalid (e.g. bad-encoding fixtures)
        for node in _documented_nodes(tree):
            docstring = ast.get_docstring(node)
            if docstring:
                document = "\n\n".join(_prose_paragraphs(docstring))
                if _enough_words(document):
                    documents.append(document)
    return documents


_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_STATEMENT_LISTS = ("body", "orelse", "finalbody", "handlers")


def _documented_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Modules, classes and functions in source order, visiting statements only (ast.walk also
    visits every expression node, which makes it several times slower)."""
    if isinstance(node, _DOCUMENTED):
        yield node
    for name in _STATEMENT_LISTS:
        for child in getattr(node, name, ()):
            if isinstance(child, (ast.stmt, ast.excepthandler)):
                yield from _documented_nodes(child)


@functools.lru_cache(maxsize=1)
def _cached_corpus() -> tuple[str, ...]:
    # dict.fromkeys drops repeats (shared docstrings of sibling classes) and keeps the order.
    return tuple(dict.fromkeys(_topic_documents() + _docstring_documents()))


def builtin_corpus() -> list[str]:
    """Documents of the built-in corpus (about 1.3 MB of English prose on CPython 3.11), in a fixed order.

    Built once per process (a few seconds: every stdlib source is parsed) and cached.
    """
    return list(_cached_corpus())


@functools.lru_cache(maxsize=1)
def builtin_corpus_fingerprint() -> str:
    """SHA-256 of what the corpus is made from, without building it (cheap: file metadata only).

    Covers this module's filter version, the Python version, and the path, size and modification
    time of every source file (pydoc_data's topics and each stdlib .py file read), so any change
    to an input changes it, and cached token shards can be reused without parsing the stdlib.
    """
    import pydoc_data.topics

    digest = hashlib.sha256(f"{_FORMAT_VERSION}|{MIN_WORDS}|{MIN_LETTER_SHARE}|{TOPIC_CHUNK_CHARS}|{sys.version}".encode())
    for path in [Path(pydoc_data.topics.__file__), *_stdlib_sources()]:
        stat = path.stat()
        digest.update(f"|{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()
