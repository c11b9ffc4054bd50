"""Which of a model's tensors a state dict leaves unset, named so that a missing norm cannot go unnoticed.

``from_pretrained`` fills a tensor the checkpoint lacks with a fresh init and only logs it; for a norm
that silently turns a trained model into a different one. The loaders of this package
(:func:`ibnorm_llm.models.build.load_model`, :func:`ibnorm_llm.models.official.load_official_state_dict`)
refuse such a state dict and name what is missing, norms first.
"""

from __future__ import annotations

from torch import nn

from ibnorm_llm.norms import NORMS


class UnsetWeightsError(ValueError):
    """A checkpoint or state dict leaves tensors of the model unset; the message names them."""


def _norm_modules(model: nn.Module) -> set[str]:
    classes = tuple(NORMS.values())
    return {name for name, module in model.named_modules() if isinstance(module, classes)}


def unset_tensors(model: nn.Module, names: set[str]) -> list[str]:
    """The model's parameters and persistent buffers that ``names`` does not set, norms first.

    A tied parameter (GPT-2's lm_head, a tied LLaMA head) counts as set when any of its names is.
    """
    by_tensor: dict[int, list[str]] = {}
    for name, tensor in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        by_tensor.setdefault(id(tensor), []).append(name)
    persistent = set(model.state_dict())
    unset = [aliases[0] for aliases in by_tensor.values()
             if aliases[0] in persistent and not any(alias in names for alias in aliases)]
    norms = _norm_modules(model)
    return sorted(unset, key=lambda name: (name.rsplit(".", 1)[0] not in norms, name))


def describe_unset(model: nn.Module, unset: list[str]) -> str:
    """``unset`` in words: how many, which kind, the first few names."""
    norms = _norm_modules(model)
    n_norm = sum(name.rsplit(".", 1)[0] in norms for name in unset)
    shown = ", ".join(unset[:6]) + (f" and {len(unset) - 6} more" if len(unset) > 6 else "")
    if n_norm:
        return f"{n_norm} norm tensor(s) would stay unset ({shown})"
    return f"{len(unset)} tensor(s) would stay unset ({shown})"
