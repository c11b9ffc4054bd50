"""The CPU kernel of ``csrc/`` as torch operators: built once, differentiable, traceable.

``csrc/ibnorm_cpu.cpp`` defines the operators ``torch.ops.ibnorm_llm.ibnorm_forward`` and
``ibnorm_backward`` (their schemas there are the one signature table) and runs the rows on
torch's own intra-op threads. This module builds it with ``torch.utils.cpp_extension.load``
(compiled once per CPU model into torch's extension cache, ``TORCH_EXTENSIONS_DIR`` or
``~/.cache/torch_extensions``; later processes only load it), and registers what torch.compile
and autograd need: the operators' fake (shape-only) versions and the backward.

Why C++: on CPU, ATen's vectorized ``log1p``/``tanh`` alone cost about as much as LayerNorm's
whole forward+backward, and eager PyTorch walks the data a dozen times; the kernel handles one
group at a time in cache with vectorizable polynomial approximations.

A checkpoint's copy of the norm code has no ``csrc/`` beside it: there the operators are used
when the process already has them, built from the installed ibnorm_llm's sources when it is
installed, and are unavailable otherwise (``impl: auto`` then takes the formula).
"""

from __future__ import annotations

import hashlib
import importlib.util
import platform
import threading
from pathlib import Path
from typing import Any

import torch

CSRC = Path(__file__).with_name("csrc")
PACKAGE = "ibnorm_llm"
SOURCES = ("ibnorm_cpu.cpp",)
# -march=native: the loops vectorize for this CPU. No -ffast-math: it would reassociate the exact
# reductions and the argument reductions of the approximations. -fno-trapping-math lets the
# compiler evaluate both sides of a select; -fopenmp makes at::parallel_for run on torch's OpenMP
# threads (torch loads libgomp.so.1, and the extension's libgomp.so.1 resolves to that copy).
CFLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math")
FORWARD = "ibnorm_llm::ibnorm_forward"
BACKWARD = "ibnorm_llm::ibnorm_backward"

_lock = threading.Lock()
_unavailable: str | None = None
_loaded = False
_sources_missing = False


class SourcesMissing(RuntimeError):
    """The kernel's C++ sources are not here: a checkpoint's copy of the norm code without ibnorm_llm installed."""


def _defined() -> bool:
    return hasattr(torch.ops.ibnorm_llm, "ibnorm_forward")


def _cpu_key() -> str:
    """-march=native code only runs on this CPU model: key the build by its feature flags."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return hashlib.sha256((platform.machine() + flags).encode()).hexdigest()[:10]


def _sources() -> Path:
    """``csrc/`` beside this file, else (a checkpoint's copy) the installed package's."""
    if all((CSRC / name).is_file() for name in SOURCES):
        return CSRC
    spec = importlib.util.find_spec(PACKAGE)  # a top-level name: found without importing anything
    installed = Path(spec.origin).parent / "norms" / "csrc" if spec is not None and spec.origin else None
    if installed is None or not all((installed / name).is_file() for name in SOURCES):
        raise SourcesMissing(f"the kernel sources ({', '.join(SOURCES)}) are neither in {CSRC} nor in an installed {PACKAGE}")
    return installed


def _source_key(csrc: Path) -> str:
    """The build is keyed by its sources too: two versions of the package (two checkouts, a
    checkpoint's copy) sharing one extension cache must never load each other's operators."""
    digest = hashlib.sha256()
    for path in sorted(csrc.iterdir()):
        if path.suffix in (".cpp", ".h"):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


def _build() -> None:
    from filelock import FileLock
    from torch.utils import cpp_extension

    csrc = _sources()
    name = f"ibnorm_llm_cpu_{_cpu_key()}_{_source_key(csrc)}"
    build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
    # torch marks a build in progress with a plain file, <build dir>/lock, and makes every other process
    # wait until it is gone: a build killed midway (Ctrl-C, a killed job) leaves it behind and the next
    # process waits forever. Our builds hold an OS lock instead, which dies with its holder, so a torch
    # lock found while holding it belongs to no running build.
    with FileLock(str(build_dir / "ibnorm_llm_build.lock")):
        (build_dir / "lock").unlink(missing_ok=True)
        cpp_extension.load(
            name=name,
            sources=[str(csrc / source) for source in SOURCES],
            extra_include_paths=[str(csrc)],
            extra_cflags=list(CFLAGS),
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
            verbose=False,
        )


def load() -> str | None:
    """Build (first time on this machine) and register the operators; None, or why they are unavailable."""
    global _unavailable, _loaded, _sources_missing
    if _loaded or _unavailable is not None:
        return _unavailable
    with _lock:
        if _loaded or _unavailable is not None:
            return _unavailable
        try:
            if not _defined():
                _build()
        except Exception as err:  # a compiler error, no compiler, no ninja, an unwritable cache: all mean "unavailable"
            _sources_missing = isinstance(err, SourcesMissing)
            _unavailable = f"{type(err).__name__}: {str(err).strip()[-1500:]}"
            return _unavailable
        _register_fake_and_autograd()
        _loaded = True
        return None


def unavailable_fix() -> str:
    """What makes the kernel available, for the last :func:`load` that failed."""
    if _sources_missing:
        return (f"install the {PACKAGE} package (pip install {PACKAGE}): this copy of the norm code, a checkpoint's, "
                "carries no kernel sources")
    return "install a C++ compiler (g++) and ninja"


def saves_compressed(variant: str, *, deviation: str, order: str, learnable_lam: bool) -> bool:
    """Whether the backward runs from the compressed deviations ``c`` instead of the input.

    Both cost one activation of memory. From ``c`` the backward of T needs no tanh (its slope is
    ``1 - (lam c)^2``) and L's needs one exp instead of a log and a division; that outweighs the
    forward's extra store of ``c``. S gains nothing and keeps the input. T's deviations cannot
    be recovered where tanh saturates, so T keeps the input when it needs them (std units,
    learnable lambda). The same under either ``lam_role``: for L and T the scale role at lambda is
    the rate role at 1/lambda (the kernel computes it so), so what ``c`` gives back is the same,
    and T saturates under both.
    """
    if order != "compress_first" or variant not in ("L", "T"):
        return False
    return variant == "L" or not (deviation == "std" or learnable_lam)


def ibnorm_cpu(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, *,
               lam: float | torch.Tensor, **options: Any) -> torch.Tensor:
    """IBNorm on the CPU kernel (fp32 compute, ``x``'s dtype out); ``options`` as ``ibnorm_reference`` takes them.

    Saves one activation (``x``, or the compressed deviations) and per-group statistics. Call
    :func:`load` first.
    """
    lam_t = lam.float().reshape(()) if torch.is_tensor(lam) else torch.tensor(float(lam))
    # c only serves a backward: under no_grad (evaluation, generation) it would be written for nothing.
    backward_follows = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias, lam_t)
    )
    save_c = backward_follows and saves_compressed(
        options["variant"], deviation=options["deviation"], order=options["order"], learnable_lam=lam_t.requires_grad
    )
    y, _, _ = torch.ops.ibnorm_llm.ibnorm_forward(x.float(), _fp32(weight), _fp32(bias), lam_t, **options, save_c=save_c)
    return y.to(x.dtype)


def rmsnorm_cpu(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """RMSNorm of fp32 ``x`` on the CPU kernel: IBNorm's kernel with the compression switched off."""
    y, _, _ = torch.ops.ibnorm_llm.ibnorm_forward(
        x, weight, None, torch.tensor(1.0), "identity", "raw", "rms", "compress_first", 1, float(eps), False
    )
    return y


def elementwise(fn: str, x: torch.Tensor) -> torch.Tensor:
    """The kernel's own ``log1p``/``tanh`` (x >= 0) or ``expm1``/``exp2`` (x <= 0), for their accuracy tests."""
    return torch.ops.ibnorm_llm.ibnorm_elementwise(fn, x)


def _fp32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float().contiguous()


# ---- what torch.compile and autograd need beside the C++ kernels ----


def _forward_fake(x, weight, bias, lam, variant, deviation, standardize, order, num_groups, eps, save_c,
                  lam_role="rate"):
    rows = x.numel() // x.shape[-1]
    return x.new_empty(x.shape), x.new_empty((4, rows, num_groups)), x.new_empty(x.shape if save_c else (0,))


def _backward_fake(grad_y, saved, weight, stats, lam, variant, deviation, standardize, order, num_groups, from_c,
                   need_weight, need_bias, need_lam, lam_role="rate"):
    width = saved.shape[-1]
    return (saved.new_empty(saved.shape), saved.new_empty((width,) if need_weight else (0,)),
            saved.new_empty((width,) if need_bias else (0,)), saved.new_empty(()))


def _setup_context(ctx, inputs, output) -> None:
    # inputs has the schema's defaults filled in: lam_role is there even when the caller left it out
    x, weight, _bias, lam, variant, deviation, standardize, order, num_groups, _eps, save_c, lam_role = inputs
    _y, stats, c = output
    ctx.save_for_backward(c if save_c else x, weight, lam, stats)
    # stats and c only serve the backward: without this, autograd would fill an activation-sized
    # zero gradient for c in every backward
    ctx.mark_non_differentiable(stats, c)
    ctx.set_materialize_grads(False)
    ctx.options = (variant, deviation, standardize, order, num_groups, save_c)
    ctx.lam_role = lam_role


def _backward(ctx, grad_y, _grad_stats, _grad_c):
    saved, weight, lam, stats = ctx.saved_tensors
    need_x, need_weight, need_bias, need_lam = ctx.needs_input_grad[:4]
    if grad_y is None:  # not materialized: y itself did not reach the loss
        return (None,) * 12
    gx, gw, gb, glam = torch.ops.ibnorm_llm.ibnorm_backward(
        grad_y, saved, weight, stats, lam, *ctx.options, need_weight, need_bias, need_lam, ctx.lam_role
    )
    return (gx if need_x else None, gw if need_weight else None, gb if need_bias else None,
            glam if need_lam else None, *[None] * 8)


def _register_fake_and_autograd() -> None:
    # Once per process: a checkpoint's copy of this module finds them registered by ibnorm_llm's.
    if torch._C._dispatch_has_kernel_for_dispatch_key(FORWARD, "Autograd"):
        return
    torch.library.register_fake(FORWARD, _forward_fake)
    torch.library.register_fake(BACKWARD, _backward_fake)
    torch.library.register_autograd(FORWARD, _backward, setup_context=_setup_context)
