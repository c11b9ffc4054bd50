"""Muon for the hidden matrices and AdamW for everything else, as one optimizer object.

``MuonWithAdamW`` holds a ``Muon`` (``torch.optim.Muon``) and a ``torch.optim.AdamW`` over
disjoint parameters and presents them as one ``torch.optim.Optimizer``: its ``param_groups`` are
the two optimizers' groups (the same dicts, so the trainer's learning-rate schedule reaches both)
and its ``state`` is the one per-parameter state both of them write into. ``state_dict`` and
``load_state_dict`` are therefore the ordinary ones: accelerate's wrapper, the single-process/DDP
``optimizer.pt`` and torch.distributed.checkpoint's FSDP2 state (keyed by parameter name) all work
unchanged, and a resumed run continues exactly.

``Muon`` is ``torch.optim.Muon``'s update (Keller Jordan's: momentum as a running average,
optional Nesterov look-ahead, the quintic Newton-Schulz iteration in bf16 with coefficients
(3.4445, -4.7750, 2.0315), the shape-dependent lr adjustment, decoupled weight decay) with two
additions torch's loop lacks:

- FSDP2: a parameter is a DTensor holding one row shard per rank. Momentum and decay are
  elementwise and stay on the shard; Newton-Schulz needs the whole matrix, so each rank gathers
  the whole update (``DTensor.full_tensor()``, one all-gather per matrix), runs the iteration on it
  (the same input on every rank, so the same result) and keeps its own rows. Every rank computes
  every matrix: simple, and at our sizes the iteration costs little next to the forward and backward.
- Newton-Schulz precision (group option ``ns_dtype``): ``bfloat16`` is the published recipe and
  torch's own iteration; ``float32`` runs the same quintic iteration in fp32; ``auto`` (the default)
  picks bf16 for a CUDA matrix and fp32 elsewhere. A CPU without bf16 arithmetic runs bf16 matmuls
  emulated: a tiny model's Muon run went from 2,600 to 900 tokens/s with them (docs/training.md).
- GPT-2's ``Conv1D`` stores its weight as (in, out), the transpose of ``nn.Linear``'s (out, in).
  Newton-Schulz is transpose-equivariant, but the ``original`` lr adjustment,
  sqrt(max(1, fan_out / fan_in)), reads the shape: a group with ``transposed=True`` reads it
  reversed, so a GPT-2 projection gets the factor of the same ``nn.Linear``.
"""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.optim._muon import _adjust_lr, _zeropower_via_newtonschulz
from torch.optim.optimizer import _to_scalar

NS_DTYPES = ("auto", "bfloat16", "float32")


def ns_precision(ns_dtype: str, device: torch.device) -> torch.dtype:
    """The dtype Newton-Schulz runs in: ``auto`` is bf16 on CUDA (the recipe) and fp32 elsewhere."""
    if ns_dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, ns_dtype)


def newton_schulz(update: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float,
                  dtype: torch.dtype) -> torch.Tensor:
    """torch.optim.Muon's quintic Newton-Schulz orthogonalization, in ``dtype``: bf16 is torch's own
    function; another dtype runs the same iteration (normalize by the Frobenius norm, then
    X <- aX + (bA + cA^2)X with A = XX^T, on the wide orientation) in that dtype."""
    if dtype == torch.bfloat16:
        return _zeropower_via_newtonschulz(update, coefficients, steps, eps)
    a, b, c = coefficients
    tall = update.size(0) > update.size(1)
    x = update.to(dtype)
    x = x.T if tall else x
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class Muon(torch.optim.Muon):
    """torch.optim.Muon with whole-matrix Newton-Schulz for FSDP2 shards and (in, out) weight groups.

    Each param group may set ``transposed`` (default False): its matrices are stored (in, out); and
    ``ns_dtype`` (default ``auto``): the precision of the Newton-Schulz iteration (module docstring).
    """

    def __init__(self, params, *, ns_dtype: str = "auto", **kwargs) -> None:
        if ns_dtype not in NS_DTYPES:
            raise ValueError(f"ns_dtype={ns_dtype!r}: must be one of {', '.join(NS_DTYPES)}")
        super().__init__(params, **kwargs)
        for group in self.param_groups:
            group.setdefault("transposed", False)
            group.setdefault("ns_dtype", ns_dtype)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, group)
        return loss

    def _update(self, param: torch.Tensor, group: dict) -> None:
        """torch.optim._muon._single_tensor_muon for one matrix, gathering a sharded update first."""
        grad = param.grad
        lr, momentum = _to_scalar(group["lr"]), group["momentum"]
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
        buf = state["momentum_buffer"]
        buf.lerp_(grad, 1 - momentum)
        update = grad.lerp(buf, momentum) if group["nesterov"] else buf
        sharded = isinstance(update, DTensor)
        whole = update.full_tensor() if sharded else update
        ortho = newton_schulz(whole, group["ns_coefficients"], group["ns_steps"], group["eps"],
                              ns_precision(group["ns_dtype"], whole.device))
        if sharded:  # this rank's rows of the whole result; src_data_rank=None: no communication
            ortho = distribute_tensor(ortho, param.device_mesh, param.placements, src_data_rank=None)
        shape = param.shape[::-1] if group["transposed"] else param.shape
        adjusted_lr = _adjust_lr(lr, group["adjust_lr_fn"], shape)
        param.mul_(1 - lr * group["weight_decay"])
        param.add_(ortho, alpha=-adjusted_lr)


class MuonWithAdamW(torch.optim.Optimizer):
    """One optimizer: ``Muon`` over ``muon_groups``, ``torch.optim.AdamW`` over ``adamw_groups``.

    ``param_groups`` lists the Muon groups first; each group dict carries ``optimizer`` ('muon'
    or 'adamw'), so a reader of a state dict can tell them apart.
    """

    def __init__(self, muon_groups: list[dict], adamw_groups: list[dict], *, muon: dict, adamw: dict) -> None:
        if not muon_groups or not adamw_groups:
            raise ValueError("MuonWithAdamW needs at least one Muon and one AdamW parameter group")
        self.muon = Muon([{**g, "optimizer": "muon"} for g in muon_groups], **muon)
        self.adamw = torch.optim.AdamW([{**g, "optimizer": "adamw"} for g in adamw_groups], **adamw)
        self._n_muon = len(self.muon.param_groups)
        # The base class adopts the children's group dicts as they are (and refuses a parameter in two).
        super().__init__([*self.muon.param_groups, *self.adamw.param_groups], defaults={})
        self._share()

    def _share(self) -> None:
        """Point both optimizers at this object's groups and its one state (after init and every load)."""
        self.muon.param_groups = self.param_groups[: self._n_muon]
        self.adamw.param_groups = self.param_groups[self._n_muon :]
        self.muon.state = self.adamw.state = self.state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)  # replaces self.param_groups and self.state
        self._share()
