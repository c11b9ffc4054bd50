"""The warmup-stable-decay schedule: its rates written out by hand, its config errors, and a branch:
resuming a stable-phase checkpoint with a shorter max_steps reproduces, loss for loss, a run trained
straight to that budget."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import losses, overrides_for, tiny_config

from ibnorm_llm.config import ConfigError, OptimConfig, load_config
from ibnorm_llm.train.optim import lr_at
from ibnorm_llm.train.trainer import train


def test_wsd_rates_by_hand():
    # 20 steps, 2 of warmup, decay over the last 0.25 * 20 = 5 (steps 15..19 lower the rate, 20 is the floor).
    linear = OptimConfig(lr=1.0, warmup_steps=2, schedule="wsd", decay_fraction=0.25, min_lr_ratio=0.0)
    assert [lr_at(s, linear, 20) for s in range(21)] == pytest.approx(
        [0.5, 1.0, *[1.0] * 13, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
    root = OptimConfig(lr=1.0, warmup_steps=2, schedule="wsd", decay_fraction=0.25, decay_shape="1-sqrt",
                       min_lr_ratio=0.1)
    expected = [0.1 + 0.9 * (1 - math.sqrt(k / 5)) for k in range(6)]
    assert [lr_at(s, root, 20) for s in range(15, 21)] == pytest.approx(expected)
    assert lr_at(14, root, 20) == 1.0 and lr_at(40, root, 20) == pytest.approx(0.1)


@pytest.mark.parametrize("overrides, message", [
    (["optim.decay_fraction=0.3"], "optim.decay_fraction is set but optim.schedule=cosine"),
    (["optim.schedule=wsd", "optim.decay_fraction=0"], "optim.decay_fraction=0.0: must be in (0, 1]"),
    (["optim.schedule=wsd", "optim.decay_shape=cosine"], "optim.decay_shape='cosine': must be one of linear, 1-sqrt"),
    (["optim.schedule=wsd", "train.max_steps=10", "optim.warmup_steps=9"],
     "optim.warmup_steps=9 plus the decay's 2 steps exceed train.max_steps=10"),
])
def test_wsd_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("]", r"\]")):
        load_config("llama_tiny_rmsnorm.yaml", overrides)


def test_a_branch_from_the_stable_phase_equals_a_run_straight_to_its_budget(tmp_path, data_files):
    base = [*overrides_for(tmp_path, data_files), "optim.schedule=wsd", "optim.decay_fraction=0.25",
            "optim.warmup_steps=2", "train.log_every=1"]
    straight = train(tiny_config([*base, "run_name=straight", "train.max_steps=8"])).run_dir
    # The long run's stable phase passes step 6, where the 8-step budget starts its 2-step decay.
    long = train(tiny_config([*base, "run_name=long", "train.max_steps=16", "train.checkpoint_every=6"])).run_dir
    branch = train(tiny_config([*base, "run_name=branch", "train.max_steps=8",
                                f"train.resume={long / 'checkpoints' / 'step_6'}"])).run_dir
    reference, stable, decayed = losses(straight), losses(long), losses(branch)
    assert [stable[s] for s in range(1, 7)] == [reference[s] for s in range(1, 7)]
    assert sorted(decayed) == [7, 8] and [decayed[s] for s in (7, 8)] == [reference[s] for s in (7, 8)]
    # A budget of 14 decays from step 10 (0.25 * 14 rounds to 4 steps): step 12 is past it.
    with pytest.raises(ConfigError, match=r"a wsd branch must start in the stable phase, but the checkpoint is at "
                                          r"step 12 and the decay starts at step 10 for train.max_steps=14"):
        train(tiny_config([*base, "run_name=late", "train.max_steps=14",
                           f"train.resume={long / 'checkpoints' / 'step_12'}"]))
    weights = [load_file(run / "checkpoints" / "final" / "model.safetensors") for run in (straight, branch)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
