"""Keep freed memory for reuse on CPU: no page faults in every training step.

glibc's malloc hands big blocks (activations, gradients) back to the kernel when they are
freed (munmap, or trimming the heap), so the next step's allocations of the same sizes fault
in every 4 KiB page again, a zeroing page fault each. For small models on CPU those faults
are a sizeable share of a training step and can take longer than a large LayerNorm's
forward+backward itself (docs/benchmarks.md). With ``mmap`` off for allocations and no trimming, freed
blocks stay in the process and are reused: the resident size stays at the first step's peak,
which a training loop reaches every step anyway.

This is what ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...`` does
at start-up, done at run time with ``mallopt``. Other C libraries (musl, macOS) are left alone;
``IBNORM_LLM_MALLOC_DEFAULTS=1`` keeps glibc's defaults too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def reuse_freed_memory(device_type: str = "cpu") -> str:
    """On a CPU run (``device_type``), set glibc's malloc to keep freed memory for reuse; returns
    what was done, for the run log.

    ``"reuse"`` when set, ``"not-cpu"`` for another device (its activations are not in this
    process's heap), ``"default"`` when the opt-out is set, ``"unavailable"`` elsewhere.
    """
    if device_type != "cpu":
        return "not-cpu"
    if os.environ.get("IBNORM_LLM_MALLOC_DEFAULTS") == "1":
        return "default"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only: musl and others have no such symbol  # noqa: B018
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "unavailable"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success
    if mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1:
        return "reuse"
    return "unavailable"
