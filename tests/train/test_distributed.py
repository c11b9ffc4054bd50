"""Multi-process training through `accelerate launch` on CPU (one node and two), and a SIGKILL
during a checkpoint write.

Each launch must prove it really formed a 2-process group (run.json: world_size 2, ranks 0
and 1): on a CPU-only machine two processes that silently trained alone would still match
the single-process losses.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess

import pytest
from train_helpers import ROOT, losses, overrides_for, pretrain, pretrain_command, pretrain_env, tiny_config

from ibnorm_llm.models import load_model
from ibnorm_llm.train import checkpoint as ckpt
from ibnorm_llm.train.trainer import train

pytestmark = pytest.mark.slow

# Global batch 4 sequences: one process accumulates 2 micro batches of 2, two processes take one each.
BATCH = ["train.micro_batch_size=2", "train.global_batch_size=4", "train.max_steps=6"]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("dist_runs")


@pytest.fixture(scope="module")
def base(out_dir, data_files):
    return [*overrides_for(out_dir, data_files), *BATCH]


@pytest.fixture(scope="module")
def single(base):
    result = train(tiny_config([*base, "run_name=single"]))
    return losses(result.run_dir)


def _check_group(run_dir, distributed_type):
    run = json.loads((run_dir / "run.json").read_text())
    assert (run["world_size"], run["ranks"], run["distributed_type"]) == (2, [0, 1], distributed_type)
    assert run["grad_accum"] == 1 and run["global_batch_size"] == 4
    assert all(r["world_size"] == 2 for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()))


def _launch_and_resume(base, out_dir, name, launch):
    first = pretrain([*base, f"run_name={name}", "train.checkpoint_every=3"], launch=launch)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = pretrain(
        [*base, f"run_name={name}_resumed", f"train.resume={out_dir / name}/checkpoints/step_3"], launch=launch
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return out_dir / name, out_dir / f"{name}_resumed"


LAUNCH = {
    "MULTI_CPU": ["--config_file", "launch/ddp_cpu.yaml"],
    "DEEPSPEED": ["--config_file", "launch/deepspeed_zero2.yaml", "--num_processes", "2"],
}


@pytest.fixture(scope="module")
def launched(base, out_dir):
    """(run, resumed run) per distributed type, launched once for all tests of the module."""
    runs = {}

    def get(distributed_type):
        if distributed_type not in runs:
            name = distributed_type.lower()
            runs[distributed_type] = _launch_and_resume(base, out_dir, name, LAUNCH[distributed_type])
        return runs[distributed_type]

    return get


@pytest.mark.parametrize("distributed_type", list(LAUNCH), ids=["ddp", "deepspeed_zero2"])
def test_two_processes_match_one_and_resume_exactly(base, out_dir, single, launched, distributed_type):
    run_dir, resumed_dir = launched(distributed_type)
    _check_group(run_dir, distributed_type)
    _check_group(resumed_dir, distributed_type)
    two = losses(run_dir)
    assert sorted(two) == sorted(single) == list(range(1, 7))
    for step, loss in single.items():
        assert abs(two[step] - loss) < 1e-4, (step, two[step], loss)
    again = losses(resumed_dir)
    assert sorted(again) == [4, 5, 6]
    for step, loss in again.items():
        assert abs(two[step] - loss) <= 1e-6, (step, two[step], loss)
    if distributed_type == "DEEPSPEED":  # sharded state beside a plain model directory
        final = run_dir / "checkpoints" / "final"
        assert (ckpt.state_dir(final) / "accelerate").is_dir()
        assert load_model(final).config.num_hidden_layers == 2  # a normal, loadable model directory


def _two_nodes(overrides_per_node: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """One `accelerate launch --num_machines 2` per "node" on this host, run side by side."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = []
    for rank, overrides in enumerate(overrides_per_node):
        launch = [*LAUNCH["MULTI_CPU"], "--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank),
                  "--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
        nodes.append(subprocess.Popen(pretrain_command(overrides, launch=launch), cwd=ROOT, env=pretrain_env(),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for node in nodes:
        stdout, stderr = node.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(node.args, node.returncode, stdout, stderr))
    return results


def test_two_nodes_train_as_one_group(base, out_dir, launched):
    name = "two_nodes"
    for node in _two_nodes([[*base, f"run_name={name}"]] * 2):
        assert node.returncode == 0, node.stderr[-3000:]
    run = json.loads((out_dir / name / "run.json").read_text())
    assert (run["world_size"], run["ranks"]) == (2, [0, 1])
    assert [p["local_rank"] for p in run["processes"]] == [0, 0]  # one process on each "node"
    one_node = losses(launched("MULTI_CPU")[0])
    assert losses(out_dir / name) == pytest.approx(one_node, abs=1e-6)


def test_node_local_out_dir_stops_before_training(base, out_dir):
    nodes = _two_nodes([[*base, f"out_dir={out_dir / f'node{rank}'}", "run_name=local"] for rank in range(2)])
    for node in nodes:
        assert node.returncode != 0
    assert "out_dir must be on a filesystem all nodes share" in nodes[0].stderr + nodes[1].stderr
    assert "rank(s) [1] did not find it" in nodes[1].stderr
    for rank in range(2):
        assert not (out_dir / f"node{rank}" / "local" / "metrics.jsonl").exists()  # stopped before step 1


def test_sigkill_during_checkpoint_write_resumes_from_last_complete(base, out_dir, single):
    name = "killed"
    overrides = [*base, f"run_name={name}", "train.checkpoint_every=2"]
    killed = pretrain(overrides, env={"PROBE_KILL_DURING_CHECKPOINT": "4"}, probe=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    root = ckpt.checkpoints_root(out_dir / name)
    assert sorted(p.name for p in root.iterdir()) == [".tmp_step_4", "step_2"]  # the half-written one
    assert ckpt.find_latest(out_dir / name).name == "step_2"

    resumed = pretrain([*overrides, "train.resume=auto"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr and "step_2" in resumed.stderr
    assert sorted(p.name for p in root.iterdir()) == ["final", "step_2", "step_4"]  # the last step is saved as final/ only
    curve = losses(out_dir / name)
    assert sorted(curve) == list(range(1, 7))  # records of the killed run past step 2 were replaced
    for step in range(3, 7):
        assert abs(curve[step] - single[step]) <= 1e-6, (step, curve[step], single[step])
