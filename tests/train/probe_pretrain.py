"""``ibnorm-llm train`` with test probes, for runs the tests launch (also under accelerate launch).

    PROBE_DTYPES=DIR              each rank writes DIR/rank_<r>.json: the dtypes the norms saw as
                                  input, the dtypes their reductions (the statistics) ran in, and
                                  the dtypes nn.Linear layers produced
    PROBE_KILL_DURING_CHECKPOINT=N  SIGKILL this process while it writes the checkpoint of step N
                                  (after the model directory, before the trainer state)

The probes wrap the trainer's functions from outside; production code has no test hooks.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from ibnorm_llm.cli import run_command
from ibnorm_llm.norms import NORMS
from ibnorm_llm.train import checkpoint, trainer

# Ops that compute a norm's statistics, seen through __torch_function__. A kernel that computes them
# inside one opaque op must be added here by name, or its statistics go unseen.
REDUCTIONS = {"mean", "var", "var_mean", "std", "sum", "rsqrt", "amax", "norm", "vector_norm", "rms_norm", "layer_norm"}


class _Reductions(TorchFunctionMode):
    """Records the dtype of every floating tensor a reduction op is called on."""

    def __init__(self, seen: set[str]):
        super().__init__()
        self.seen = seen

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in REDUCTIONS:
            self.seen.update(str(a.dtype) for a in args if torch.is_tensor(a) and a.is_floating_point())
        return func(*args, **(kwargs or {}))


def _probe_dtypes(out: Path) -> None:
    seen: dict[str, set[str]] = {"norm_inputs": set(), "norm_stats": set(), "linear_outputs": set()}
    norm_classes = tuple(NORMS.values())
    modes: list[_Reductions] = []

    def norm_pre(module, args):
        seen["norm_inputs"].add(str(args[0].dtype))
        modes.append(_Reductions(seen["norm_stats"]))
        modes[-1].__enter__()

    def norm_post(module, args, output):
        modes.pop().__exit__(None, None, None)

    def linear_post(module, args, output):
        seen["linear_outputs"].add(str(output.dtype))

    build = trainer.build_model

    def build_and_probe(*args, **kwargs):
        model = build(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, norm_classes):
                module.register_forward_pre_hook(norm_pre)
                module.register_forward_hook(norm_post)
            elif isinstance(module, torch.nn.Linear):
                module.register_forward_hook(linear_post)
        return model

    trainer.build_model = build_and_probe
    rank = os.environ.get("RANK", "0")
    atexit.register(lambda: (out / f"rank_{rank}.json").write_text(json.dumps({k: sorted(v) for k, v in seen.items()})))


def _kill_during_checkpoint(step: int) -> None:
    write = checkpoint.write_training_state

    def write_or_die(state_dir, **kwargs):
        if state_dir.parent.name == f".tmp_step_{step}":
            os.kill(os.getpid(), signal.SIGKILL)
        return write(state_dir, **kwargs)

    checkpoint.write_training_state = write_or_die


if __name__ == "__main__":
    if out := os.environ.get("PROBE_DTYPES"):
        Path(out).mkdir(parents=True, exist_ok=True)
        _probe_dtypes(Path(out))
    if step := os.environ.get("PROBE_KILL_DURING_CHECKPOINT"):
        _kill_during_checkpoint(int(step))
    sys.exit(run_command("train", sys.argv[1:]))
