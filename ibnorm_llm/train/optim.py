"""Optimizer with decay only on matrices, and the learning-rate schedule as a pure function."""

from __future__ import annotations

import math

import torch
from torch import nn

from ibnorm_llm.config import OptimConfig


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


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW (decoupled decay) or Adam (L2 decay, the GaLore recipe uses it with decay 0).

    Tied parameters (e.g. GPT-2's lm_head and token embedding) appear once.
    """
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
    stays at lr. Resume needs no scheduler state: the step alone determines the rate.
    """
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    min_lr = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "constant":
        return cfg.lr
    decay_steps = max(1, max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    if cfg.schedule == "linear":
        return cfg.lr - (cfg.lr - min_lr) * progress
    return min_lr + 0.5 * (cfg.lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
