"""``ibnorm-llm train`` with a loss spike injected on one rank, for the spike tests.

    SPIKE_RANK=R SPIKE_STEP=N   on rank R, the forward of optimizer step N has its logits scaled by 50
                                (a batch the model is confidently wrong about: the loss jumps on that rank only)

The injection wraps the trainer's train_step from outside; production code has no test hooks.
"""

from __future__ import annotations

import os
import sys

from ibnorm_llm.cli import run_command
from ibnorm_llm.train import trainer

SCALE = 50.0


def inject(session, step: int) -> list:
    """Scale the logits of ``session``'s model in the forwards of the step about to run; returns the handles."""
    head = session.strategy.plain_model(session.model).get_output_embeddings()
    return [head.register_forward_hook(lambda _m, _a, output: output * SCALE)]


def _patch(rank: int, step: int) -> None:
    original = trainer.train_step

    def train_step(s, progress):
        if s.accelerator.process_index != rank or progress.step + 1 != step:
            return original(s, progress)
        handles = inject(s, step)
        try:
            return original(s, progress)
        finally:
            for handle in handles:
                handle.remove()

    trainer.train_step = train_step


if __name__ == "__main__":
    _patch(int(os.environ["SPIKE_RANK"]), int(os.environ["SPIKE_STEP"]))
    sys.exit(run_command("train", sys.argv[1:]))
