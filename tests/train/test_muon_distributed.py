"""optim.name=muon on 2 CPU processes: DDP and FSDP2 match one process and resume exactly; DeepSpeed
is refused naming the launches that work; FSDP2 trains in bf16-mixed and bf16-pure.

FSDP2 trains IBNorm with a learnable lambda (0-d parameters that FSDP2 leaves whole, under AdamW)
and accumulates 2 micro batches per rank, as test_sharded.py does for AdamW.

The bounds were set with Newton-Schulz in bf16 (as published, and on CUDA), where a last-bit difference
between the one-process and the reduced gradient can move a bf16 rounding and the runs part by bf16
noise; on CPU the iteration now runs in fp32 (optim.muon.ns_dtype auto). Seen after 6 steps: losses
within 8e-5 (limit 2e-4); Muon's matrices within 1e-3 (limit 2e-3; they move by 2.5e-3 on average in
the last 3 steps alone). AdamW's parameters agree on average (mean |difference| 3e-6 to 1.5e-5, limit 1e-4),
but not element by element: Adam's m/sqrt(v) turns a tiny difference in a near-zero gradient (an embedding
row seen once) into a step of the order of lr, so single elements part by up to 8.4e-3. The bound that
holds by construction is Adam's: each step moves an element by at most about lr, so two runs part by at
most 2 * lr * steps. With the same gradient a
sharded matrix steps bit for bit as the whole one (test_muon.py,
test_fsdp2_shards_step_exactly_as_the_whole_matrix), and a resumed run repeats its run exactly.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import losses, overrides_for, pretrain, tiny_config

from ibnorm_llm.train import checkpoint as ckpt
from ibnorm_llm.train.trainer import train

pytestmark = pytest.mark.slow

STEPS = 6
ADAMW_LR = 3e-3
"""optim.lr of the tiny test config (train_helpers): the AdamW parameters' peak learning rate."""
BASE = ["optim.name=muon", "optim.muon.lr=0.02", "train.micro_batch_size=2", f"train.max_steps={STEPS}"]
IBNORM = ["model.norm.kind=ibnorm", "model.norm.variant=L", "model.norm.lam=4.0", "model.norm.learnable_lam=true"]
LAUNCH = {
    "ddp": (["--config_file", "launch/ddp_cpu.yaml"], ["train.global_batch_size=4"]),
    "fsdp2": (["--config_file", "launch/fsdp_cpu.yaml", "--num_processes", "2"],
              [*IBNORM, "train.global_batch_size=8"]),
}


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("muon_runs")


@pytest.fixture(scope="module")
def base(out_dir, data_files):
    return [*overrides_for(out_dir, data_files), *BASE]


def _run(overrides, launch):
    done = pretrain(overrides, launch=launch)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.mark.parametrize("name", list(LAUNCH))
def test_muon_on_two_processes_matches_one_and_resumes_exactly(name, base, out_dir):
    launch, model = LAUNCH[name]
    single = train(tiny_config([*base, *model, f"run_name=single_{name}"])).run_dir
    _run([*base, *model, f"run_name={name}", "train.checkpoint_every=3"], launch)
    step_3 = out_dir / name / "checkpoints" / "step_3"
    _run([*base, *model, f"run_name={name}_resumed", f"train.resume={step_3}"], launch)

    run = json.loads((out_dir / name / "run.json").read_text())
    assert (run["world_size"], run["ranks"], run["sharding"]) == (2, [0, 1], name)
    assert run["optimizer"]["name"] == "muon" and run["optimizer"]["groups"]["muon"]["tensors"] == 14
    reference, two, again = losses(single), losses(out_dir / name), losses(out_dir / f"{name}_resumed")
    assert sorted(two) == list(range(1, STEPS + 1)) and sorted(again) == [4, 5, 6]
    for step, loss in reference.items():
        assert abs(two[step] - loss) < 2e-4, (step, two[step], loss)
    for step, loss in again.items():
        assert abs(two[step] - loss) <= 1e-6, (step, loss, two[step])

    final = load_file(ckpt.checkpoints_root(out_dir / name) / "final" / "model.safetensors")
    expected = load_file(ckpt.checkpoints_root(single) / "final" / "model.safetensors")
    muon = set(run["optimizer"]["groups"]["muon"]["names"])
    adam_bound = 2 * ADAMW_LR * STEPS
    for key, tensor in expected.items():
        if key in muon:
            torch.testing.assert_close(final[key], tensor, atol=2e-3, rtol=0, msg=key)
        else:
            difference = (final[key] - tensor).abs()
            assert difference.mean() < 1e-4 and difference.max() <= adam_bound, (key, difference.mean(), difference.max())


def test_muon_under_deepspeed_is_refused_naming_the_supported_launches(base):
    done = pretrain([*base, "run_name=zero2", "train.global_batch_size=4"],
                    launch=["--config_file", "launch/deepspeed_zero2.yaml", "--num_processes", "2"])
    assert done.returncode != 0
    assert "optim.name=muon under DeepSpeed ZeRO" in done.stderr
    assert "launch/ddp.yaml" in done.stderr and "launch/fsdp.yaml" in done.stderr


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-pure"])
def test_muon_under_fsdp2_trains_in_bf16(precision, base, out_dir):
    launch, model = LAUNCH["fsdp2"]
    name = f"fsdp2_{precision}"
    _run([*base, *model, f"run_name={name}", "train.max_steps=3", f"train.precision={precision}",
          "train.allow_slow_cpu_bf16=true"], launch)
    curve = losses(out_dir / name)
    assert sorted(curve) == [1, 2, 3] and all(math.isfinite(v) for v in curve.values())
    assert curve[3] < curve[1]
