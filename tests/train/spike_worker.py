"""``ibnorm-llm train`` with a loss spike injected on one rank, for the spike tests.

    SPIKE_RANK=R SPIKE_STEP=N   on rank R, the forward of optimizer step N has its logits scaled by 50
                                (a batch the model is confidently wrong about: the loss jumps on that rank only)

Every rank writes ``<run_dir>/spike_step_rank<r>.json``: whether its own parameters (its shards under
FSDP2) came out of step N unchanged.

The injection wraps the trainer's train_step from outside; production code has no test hooks.
"""

from __future__ import annotations

import json
import os
import sys

import torch

from ibnorm_llm.cli import run_command
from ibnorm_llm.train import trainer

SCALE = 50.0


def inject(session, step: int) -> list:
    """Scale the logits of ``session``'s model in the forwards of the step about to run; returns the handles."""
    head = session.strategy.plain_model(session.model).get_output_embeddings()
    return [head.register_forward_hook(lambda _m, _a, output: output * SCALE)]


def _local(parameter: torch.Tensor) -> torch.Tensor:
    """This rank's part of a parameter: the local shard of an FSDP2 DTensor, else the tensor."""
    return getattr(parameter, "to_local", lambda: parameter)().detach().clone()


def _patch(rank: int, step: int) -> None:
    original = trainer.train_step

    def train_step(s, progress):
        if progress.step + 1 != step:
            return original(s, progress)
        before = [_local(p) for p in s.model.parameters()]
        handles = inject(s, step) if s.accelerator.process_index == rank else []
        try:
            grad_norm = original(s, progress)
        finally:
            for handle in handles:
                handle.remove()
        unchanged = all(torch.equal(old, _local(p)) for old, p in zip(before, s.model.parameters(), strict=True))
        report = s.cfg.run_dir / f"spike_step_rank{s.accelerator.process_index}.json"
        report.write_text(json.dumps({"unchanged": unchanged, "elements": sum(t.numel() for t in before)}))
        return grad_norm

    trainer.train_step = train_step


if __name__ == "__main__":
    _patch(int(os.environ["SPIKE_RANK"]), int(os.environ["SPIKE_STEP"]))
    sys.exit(run_command("train", sys.argv[1:]))
