"""reuse_freed_memory: freed blocks are reused instead of faulting their pages in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# A training step in miniature, repeated: the same large allocations are made and freed every
# step. Prints the page faults of steps 1-5 (step 0 faults everything in either way).
CHILD = """
import resource, sys
import torch
from ibnorm_llm.train.cpu_memory import reuse_freed_memory

mode = reuse_freed_memory() if sys.argv[1] == "reuse" else "untouched"
x, w = torch.randn(4096, 2048), torch.ones(2048)  # 32 MiB activations
faults = []
for step in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = torch.nn.functional.layer_norm(x, (2048,), w)
    h = y * 2
    del y, h
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(mode, sum(faults[1:]))
"""


def _steady_state_faults(how: str, env: dict | None = None) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", CHILD, how], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-2000:]
    mode, faults = done.stdout.split()
    return mode, int(faults)


def _is_glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _is_glibc(), reason="mallopt is glibc's")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    mode, faults = _steady_state_faults("reuse")
    assert mode == "reuse"
    _, default_faults = _steady_state_faults("default")
    # Two 32 MiB blocks a step are 16384 pages of 4 KiB: glibc's default maps them afresh every
    # step. Kept, they are reused (not every step: aligned allocations fragment the heap a little).
    assert default_faults > 4 * 16384
    assert faults < default_faults / 2


def test_only_cpu_runs_with_the_setting_on_change_the_allocator():
    from ibnorm_llm.train.cpu_memory import reuse_freed_memory

    assert reuse_freed_memory("cuda") == "not-cpu"
    assert reuse_freed_memory("cpu", enabled=False) == "default"  # train.reuse_freed_memory=false
