"""One rank of test_muon.py's FSDP2 check, in a module of its own so that the spawned processes
import only torch and the optimizer (tests/ is not a package: imported by name)."""

from __future__ import annotations

import torch
from torch import nn

from ibnorm_llm.train.muon import Muon


def sharded_steps(rank: int, port: int, shapes: list, results) -> None:
    """3 Muon steps of plain and FSDP2-sharded copies of the same matrices; puts (rank, equal?, local rows)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import distribute_tensor

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        whole = nn.Sequential(*(nn.Linear(i, o, bias=False) for o, i in shapes))
        sharded = nn.Sequential(*(nn.Linear(i, o, bias=False) for o, i in shapes))
        sharded.load_state_dict(whole.state_dict())
        fully_shard(sharded, mesh=init_device_mesh("cpu", (2,)))
        settings = {"lr": 0.02, "weight_decay": 0.1, "momentum": 0.95, "adjust_lr_fn": "original"}
        plain = Muon([{"params": list(whole.parameters()), "transposed": False}], **settings)
        dist_opt = Muon([{"params": list(sharded.parameters()), "transposed": False}], **settings)
        for _ in range(3):
            for p, q in zip(whole.parameters(), sharded.parameters(), strict=True):
                g = torch.randn(p.shape)  # the same on both ranks (same seed)
                p.grad = g.clone()
                q.grad = distribute_tensor(g, q.device_mesh, q.placements, src_data_rank=None)
            plain.step()
            dist_opt.step()
        same = [torch.equal(p.detach(), q.full_tensor().detach()) for p, q in zip(whole.parameters(),
                                                                               sharded.parameters(), strict=True)]
        local = [q.to_local().shape[0] for q in sharded.parameters()]
        results.put((rank, same, local))
    finally:
        dist.destroy_process_group()
