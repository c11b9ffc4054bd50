"""Build an on-disk directory exactly once, atomically, even when several processes ask at once.

Used for trained tokenizers and token shards: both DDP ranks may start together and find the
directory missing. One process builds into a temporary sibling directory and renames it into
place under a file lock; the others wait on the lock and then find it complete. A crash mid-build
leaves only a temporary directory behind, never a half-written target.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def build_dir_once(target: Path, build: Callable[[Path], None], is_complete: Callable[[Path], bool]) -> bool:
    """Make ``target`` complete, calling ``build(tmp_dir)`` only if it is not yet.

    ``build`` writes the directory's files into the empty ``tmp_dir`` it is given; that
    directory then becomes ``target`` by one rename. An existing but incomplete (or outdated,
    per ``is_complete``) ``target`` is replaced. Returns True when this call built it.
    """
    target = Path(target)
    if is_complete(target):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if is_complete(target):  # another process built it while we waited
            return False
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result should not be
        try:
            build(tmp)
            if target.exists():
                stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
                os.replace(target, stale / "old")
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return True
