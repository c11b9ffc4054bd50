"""Optimizer with decay only on matrices (AdamW, Adam, or Muon for the hidden matrices with AdamW
for the rest), and the learning-rate schedule as a pure function."""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ibnorm_llm.config import OptimConfig, wsd_decay_steps
from ibnorm_llm.train.muon import MuonWithAdamW
from ibnorm_llm.train.strategies import decoder_blocks


def decay_split(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of trainable parameters with and without weight decay.

    Decayed: 2-D weight matrices of linear layers. Not decayed: norm parameters (gains,
    biases, learnable lambda), every bias, and embeddings (token and position tables),
    because shrinking them toward zero changes what the norm or the lookup means rather
    than regularizing a projection.
    """
    embedding_params = {
        id(p) for module in model.modules() if isinstance(module, nn.Embedding) for p in module.parameters()
    }
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.dim() >= 2 and id(param) not in embedding_params:
            decay.append(name)
        else:
            no_decay.append(name)
    return decay, no_decay


def hidden_matrices(model: nn.Module) -> dict[str, bool]:
    """The matrices Muon trains, by role: the weight of every ``nn.Linear`` and GPT-2 ``Conv1D`` inside
    a decoder block (attention and MLP projections), by name, with True for Conv1D's (in, out) layout.

    Everything else is not a hidden matrix, whatever its shape: the token and position embeddings and
    the LM head (outside the blocks; tied or not), every norm's parameters (in the blocks or the final
    norm, QK-norms included), biases and scalars.
    """
    roles = {}
    for block in decoder_blocks(model):
        for module in block.modules():
            if isinstance(module, (nn.Linear, Conv1D)):
                roles[id(module.weight)] = isinstance(module, Conv1D)
    return {name: roles[id(p)] for name, p in model.named_parameters() if p.requires_grad and id(p) in roles}


def parameter_split(model: nn.Module, cfg: OptimConfig) -> dict[str, list[str]]:
    """Trainable parameter names per optimizer: {'muon': [...], 'adamw': [...]} under optim.name=muon,
    else everything under optim.name (tied parameters once)."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    if cfg.name != "muon":
        return {cfg.name: names}
    hidden = hidden_matrices(model)
    return {"muon": [n for n in names if n in hidden], "adamw": [n for n in names if n not in hidden]}


def describe_split(model: nn.Module, cfg: OptimConfig) -> dict:
    """The split for run.json: per optimizer, how many tensors and elements, and their names."""
    params = dict(model.named_parameters())
    return {
        owner: {"tensors": len(names), "elements": sum(params[n].numel() for n in names), "names": names}
        for owner, names in parameter_split(model, cfg).items()
    }


def summarize_split(split: dict) -> str:
    """One line per optimizer for the start-up log, block indices folded ('model.layers.*.mlp.up_proj.weight')."""
    lines = []
    for owner, group in split.items():
        patterns = list(dict.fromkeys(re.sub(r"\.\d+\.", ".*.", name) for name in group["names"]))
        lines.append(f"{owner}: {group['tensors']} tensors, {group['elements']:,} elements: {', '.join(patterns)}")
    return "optimizer split (optim.name decides; names in run.json):\n  " + "\n  ".join(lines)


def _build_muon(model: nn.Module, cfg: OptimConfig) -> MuonWithAdamW:
    """Muon over the hidden matrices (one group per layout), AdamW over the rest (decay as decay_split)."""
    hidden = hidden_matrices(model)
    params = dict(model.named_parameters())
    decay_names, no_decay_names = decay_split(model)
    muon_groups = [
        {"params": [params[n] for n, t in hidden.items() if t == transposed], "transposed": transposed}
        for transposed in (False, True)
    ]
    adamw_groups = [
        {"params": [params[n] for n in decay_names if n not in hidden], "weight_decay": cfg.weight_decay},
        {"params": [params[n] for n in no_decay_names if n not in hidden], "weight_decay": 0.0},
    ]
    m = cfg.muon
    return MuonWithAdamW(
        [g for g in muon_groups if g["params"]], [g for g in adamw_groups if g["params"]],
        muon={"lr": m.lr, "weight_decay": m.weight_decay, "momentum": m.momentum, "nesterov": m.nesterov,
              "ns_steps": m.ns_steps, "adjust_lr_fn": m.adjust_lr, "ns_dtype": m.ns_dtype},
        adamw={"lr": cfg.lr, "betas": cfg.betas, "eps": cfg.eps, "foreach": True},
    )


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW (decoupled decay), Adam (L2 decay, the GaLore recipe uses it with decay 0), or Muon for
    the hidden matrices with AdamW for the rest (``MuonWithAdamW``, see train/muon.py).

    Tied parameters (e.g. GPT-2's lm_head and token embedding) appear once.
    """
    if cfg.name == "muon":
        return _build_muon(model, cfg)
    decay_names, no_decay_names = decay_split(model)
    params = dict(model.named_parameters())
    groups = [
        {"params": [params[n] for n in decay_names], "weight_decay": cfg.weight_decay},
        {"params": [params[n] for n in no_decay_names], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    optimizer_class = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    # foreach: one fused kernel launch per group instead of one per tensor.
    return optimizer_class(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, foreach=True)


def lr_at(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, then decay.

    Warmup rises linearly from lr/warmup_steps to lr over ``warmup_steps`` steps; then
    ``cosine`` or ``linear`` decays to ``min_lr_ratio * lr`` at ``max_steps``; ``constant``
    stays at lr; ``wsd`` stays at lr until the last ``decay_fraction`` of ``max_steps`` and decays
    over those (``linear`` or ``1-sqrt``). Resume needs no scheduler state: the step alone determines
    the rate, so a wsd run resumed from a stable-phase checkpoint with a shorter ``max_steps`` runs
    exactly the steps a run trained straight to that budget would have.
    """
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    min_lr = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "wsd":
        decay_steps = wsd_decay_steps(cfg, max_steps)
        progress = min(1.0, max(0.0, (step - (max_steps - decay_steps)) / decay_steps))
        # 1-sqrt (Hagele et al.): lr = min + (peak - min) * (1 - sqrt(progress)).
        decayed = progress if cfg.decay_shape == "linear" else math.sqrt(progress)
        return cfg.lr - (cfg.lr - min_lr) * decayed
    decay_steps = max(1, max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    if cfg.schedule == "linear":
        return cfg.lr - (cfg.lr - min_lr) * progress
    return min_lr + 0.5 * (cfg.lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float, cfg: OptimConfig | None = None) -> None:
    """Every group to ``lr`` (optim.lr's schedule); Muon's groups to ``lr * optim.muon.lr / optim.lr``,
    so that both optimizers follow one warmup and decay. Read from ``cfg`` at every step rather than
    stored in the groups, so a resumed run takes its learning rates from its config, not the checkpoint."""
    muon_lr = lr * cfg.muon.lr / cfg.lr if cfg is not None else lr
    for group in optimizer.param_groups:
        group["lr"] = muon_lr if group.get("optimizer") == "muon" else lr
