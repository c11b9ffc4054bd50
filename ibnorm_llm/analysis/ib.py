"""Per-layer, token-level information-bottleneck values of a causal LM.

For decoder block l with input T_{l-1} (the residual stream entering it; T_{-1} is the
embeddings) and output T_l, both taken at the same N sampled tokens:

    IB_l = I(Y; T_l) − β · I(T_{l−1}; T_l)

Y is the next-token target of each sampled position. Its representation
(``analysis.target``):

- ``onehot`` (default): the token id under the identity kernel K_ij = [y_i = y_j], the σ → 0
  limit of a Gaussian kernel on one-hot vectors. S(Y) is then the Rényi entropy of the
  empirical next-token distribution and does not depend on a width rule.
- ``embedding``: the target's row of the model's input embedding matrix under the Gaussian
  kernel and width rule, so tokens with similar embeddings count as similar targets.

Activations use the Gaussian kernel with ``analysis.width_rule`` (see renyi.py). Each T_l's
Gram matrix and entropy are computed once and reused by both terms that need them.

Chance levels. The estimator is biased upwards for independent variables, strongly so for
one-hot targets: with N = 1024 tokens most next tokens occur once, and a target kernel that
tells every sample apart "explains" any T. ``chance=True`` therefore also reports each term
with one side's samples shuffled (same marginals, no dependence): compare I(Y; T_l) with
``i_target_chance`` before reading anything into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch

from ibnorm_llm.analysis.errors import AnalysisError
from ibnorm_llm.analysis.renyi import (
    DEFAULT_ALPHA,
    DEFAULT_WIDTH_RULE,
    WidthRule,
    gaussian_gram,
    label_gram,
    matrix_entropy,
    mutual_information_from_grams,
)

TargetRepr = Literal["onehot", "embedding"]
TARGET_REPRS: tuple[str, ...] = ("onehot", "embedding")


@dataclass(frozen=True)
class LayerIB:
    """IB terms of one decoder block, in bits."""

    layer: int
    """Block index (0-based)."""
    i_target: float
    """I(Y; T_l): information the block output keeps about the next token."""
    i_previous: float
    """I(T_{l-1}; T_l): information it keeps about its input."""
    ib_value: float
    """I(Y; T_l) − β · I(T_{l-1}; T_l)."""
    entropy: float
    """S(T_l)."""
    entropy_previous: float
    """S(T_{l-1})."""
    i_target_chance: float | None = None
    """I(Y; T_l) with the targets shuffled across samples: the estimator's value without dependence."""
    i_previous_chance: float | None = None
    """I(T_{l-1}; T_l) with T_{l-1} shuffled across samples."""

    def to_dict(self) -> dict:
        return asdict(self)


def check_layers(layers: Sequence[int] | None, n_blocks: int) -> list[int]:
    """Block indices to analyse (all when None); out-of-range indices are an error."""
    if layers is None:
        return list(range(n_blocks))
    chosen = sorted(set(int(layer) for layer in layers))
    bad = [layer for layer in chosen if not 0 <= layer < n_blocks]
    if bad:
        raise AnalysisError(
            f"layer index {bad[0]} is out of range: the model has {n_blocks} decoder blocks (valid 0-{n_blocks - 1})"
        )
    return chosen


def target_gram(
    targets: torch.Tensor,
    target_embeddings: torch.Tensor | None = None,
    representation: TargetRepr = "onehot",
    width_rule: WidthRule = DEFAULT_WIDTH_RULE,
) -> torch.Tensor:
    """The normalized Gram matrix of the targets Y (N, N) for the chosen representation."""
    if representation == "onehot":
        return label_gram(targets)
    if representation == "embedding":
        if target_embeddings is None:
            raise ValueError("target representation 'embedding' needs the targets' embeddings (N, d)")
        return gaussian_gram(target_embeddings, width_rule=width_rule)
    raise ValueError(f"unknown target representation {representation!r}; choose one of {', '.join(TARGET_REPRS)}")


def ib_values(
    states: Sequence[torch.Tensor],
    y_gram: torch.Tensor,
    *,
    beta: float = 1.0,
    alpha: float = DEFAULT_ALPHA,
    width_rule: WidthRule = DEFAULT_WIDTH_RULE,
    layers: Sequence[int] | None = None,
    chance: bool = True,
    seed: int = 0,
) -> list[LayerIB]:
    """IB terms for the requested blocks.

    ``states`` holds L + 1 tensors (N, d): the input of block 0, then each block's output;
    ``y_gram`` is the targets' Gram matrix (:func:`target_gram`). With ``chance`` each term's
    shuffled-sample chance level is estimated too (one permutation drawn from ``seed``; two
    more eigendecompositions per block).
    """
    if len(states) < 2:
        raise ValueError(f"need the block-0 input and at least one block output, got {len(states)} state(s)")
    chosen = check_layers(layers, len(states) - 1)
    s_target = matrix_entropy(y_gram, alpha)
    n = y_gram.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))

    def shuffled(gram: torch.Tensor) -> torch.Tensor:
        return gram[perm][:, perm]  # the Gram matrix of the samples in permuted order
    grams: dict[int, torch.Tensor] = {}
    entropies: dict[int, float] = {}

    def state(index: int) -> tuple[torch.Tensor, float]:
        if index not in grams:
            try:
                grams[index] = gaussian_gram(states[index], width_rule=width_rule)
            except ValueError as err:
                where = "block 0 input (embeddings)" if index == 0 else f"block {index - 1} output"
                raise ValueError(f"{where}: {err}") from None
            entropies[index] = matrix_entropy(grams[index], alpha)
        return grams[index], entropies[index]

    results = []
    for layer in chosen:
        gram_in, s_in = state(layer)
        gram_out, s_out = state(layer + 1)
        i_target = mutual_information_from_grams(y_gram, gram_out, alpha, s_target, s_out)
        i_previous = mutual_information_from_grams(gram_in, gram_out, alpha, s_in, s_out)
        if chance:
            i_target_chance = mutual_information_from_grams(shuffled(y_gram), gram_out, alpha, s_target, s_out)
            i_previous_chance = mutual_information_from_grams(shuffled(gram_in), gram_out, alpha, s_in, s_out)
        else:
            i_target_chance = i_previous_chance = None
        results.append(LayerIB(
            layer, i_target, i_previous, i_target - beta * i_previous, s_out, s_in, i_target_chance, i_previous_chance
        ))
        # Only the current output is needed again (as the next block's input).
        for index in [i for i in grams if i < layer + 1]:
            del grams[index]
    return results
