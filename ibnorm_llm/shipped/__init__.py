"""Files shipped with the package, found by name: config presets, study and ladder files, and the
offline evaluation smoke data.

In a checkout these folders are links to the repository's top-level ``configs/``, ``studies/``,
``ladders/`` and ``eval/offline_data/``; a built wheel holds copies (package data), so an installed
package finds them without its checkout.
"""

from __future__ import annotations

import difflib
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = {"configs": "config", "studies": "study file", "ladders": "ladder file"}
"""Folders of YAML files that are looked up by name, and what one file is called in messages."""
OFFLINE_DATA = HERE / "offline_data"
"""A few handwritten items per evaluation task: the offline smoke data (eval/offline_data/README.md)."""


def shipped_dir(kind: str) -> Path:
    if kind not in KINDS:
        raise KeyError(f"no shipped folder '{kind}'; one of {', '.join(KINDS)}")
    return HERE / kind


def shipped_names(kind: str) -> list[str]:
    return sorted(path.name for path in shipped_dir(kind).glob("*.yaml"))


def find_named(name_or_path: str | Path, kind: str) -> tuple[Path | None, str]:
    """A YAML file of ``kind``: the path as given if it is a file; else a bare name (``.yaml``
    optional) in ``./<kind>/`` of the working directory, then among the shipped files.

    Returns (path, "") or (None, a sentence saying where it looked and the closest shipped names).
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path, ""
    if path.parent == Path("."):
        for folder in (Path(kind), shipped_dir(kind)):
            for name in (path.name, f"{path.name}.yaml"):
                if (folder / name).is_file():
                    return folder / name, ""
        where = f"./{path}, ./{kind}/ and the shipped {kind} ({shipped_dir(kind)})"
    else:
        where = str(path)
    close = difflib.get_close_matches(path.name, shipped_names(kind), n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else f" Shipped: {', '.join(shipped_names(kind)) or 'none'}."
    return None, f"{KINDS[kind]} '{name_or_path}' not found (looked for {where}).{hint}"
