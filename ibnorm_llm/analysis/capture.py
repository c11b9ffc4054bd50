"""One forward pass of a causal LM that records, at N sampled token positions, what the
analysis needs: the residual stream between decoder blocks and every norm's input and output.

Modules are found by their Hugging Face names (kept by ibnorm_llm's models):

    LLaMA   model.layers[i]   .input_layernorm  .post_attention_layernorm   final model.norm
    GPT-2   transformer.h[i]  .ln_1             .ln_2                       final transformer.ln_f

plus, where a model has them, Peri-LN's output norms (LLaMA ``.attn_output_layernorm``,
``.mlp_output_layernorm``; GPT-2 ``.ln_attn_out``, ``.ln_mlp_out``) and the per-head query/key
norms (``.self_attn.q_norm``, ``.self_attn.k_norm``; GPT-2 ``.attn.q_norm``, ``.attn.k_norm``) and
HybridNorm's value norm (``.self_attn.v_norm``, ``.attn.v_norm``), whose (…, heads, head_dim)
activations are recorded flattened, one group per head. A stock norm a block's placement leaves out
(HybridNorm's attention input norm) is None there and is skipped.

A norm-free block (nGPT: ``NORM_NAMES`` empty) contributes no norms, and an identity at the final
norm's place (nGPT's ``model.norm``) is none: such a model has no norms to record, only its stream.

Block outputs are taken with forward hooks on the blocks themselves rather than from
``output_hidden_states``, whose last entry is the final norm's output, not block L's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ibnorm_llm.analysis.errors import AnalysisError


@dataclass(frozen=True)
class Layout:
    """Where a model family keeps its decoder blocks and norms (Hugging Face module names)."""

    blocks: str
    block_norms: tuple[str, ...]
    final_norm: str
    optional_norms: tuple[str, ...] = ()
    """Norms only some blocks have (Peri-LN output norms, query/key norms), in forward order."""


LAYOUTS: dict[str, Layout] = {
    "llama": Layout(
        blocks="model.layers", block_norms=("input_layernorm", "post_attention_layernorm"), final_norm="model.norm",
        optional_norms=("self_attn.q_norm", "self_attn.k_norm", "self_attn.v_norm", "attn_output_layernorm",
                        "mlp_output_layernorm"),
    ),
    "gpt2": Layout(
        blocks="transformer.h", block_norms=("ln_1", "ln_2"), final_norm="transformer.ln_f",
        optional_norms=("attn.q_norm", "attn.k_norm", "attn.v_norm", "ln_attn_out", "ln_mlp_out"),
    ),
}


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def model_layout(model: nn.Module) -> Layout:
    """The layout whose block list exists in ``model``; a clear error for other architectures."""
    for layout in LAYOUTS.values():
        if isinstance(_submodule(model, layout.blocks), nn.ModuleList):
            return layout
    raise AnalysisError(
        f"{type(model).__name__}: no decoder blocks found at "
        f"{' or '.join(layout.blocks for layout in LAYOUTS.values())}; the analysis supports LLaMA- and "
        "GPT-2-style causal LMs (ibnorm_llm models or stock transformers classes)"
    )


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's decoder blocks in order."""
    return model.get_submodule(model_layout(model).blocks)


def norm_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every normalization module by its full Hugging Face name: per block the stock two, then
    any optional ones the block has; the final norm last."""
    layout = model_layout(model)
    norms: dict[str, nn.Module] = {}
    for index, block in enumerate(decoder_blocks(model)):
        if getattr(block, "NORM_NAMES", None) == ():  # a norm-free block (nGPT)
            continue
        for attr in layout.block_norms:
            name = f"{layout.blocks}.{index}.{attr}"
            module = _submodule(model, name)
            if module is None and hasattr(block, attr) and getattr(block, attr) is None:
                continue  # left out by the block's placement (HybridNorm's attention input norm)
            if module is None:
                raise ValueError(f"{type(model).__name__}: expected a norm module at {name}")
            norms[name] = module
        for attr in layout.optional_norms:
            name = f"{layout.blocks}.{index}.{attr}"
            module = _submodule(model, name)
            if module is not None:
                norms[name] = module
    final = _submodule(model, layout.final_norm)
    if final is None:
        raise ValueError(f"{type(model).__name__}: expected the final norm at {layout.final_norm}")
    if not isinstance(final, nn.Identity):  # nGPT: no final norm
        norms[layout.final_norm] = final
    return norms


def norm_block(model: nn.Module, name: str) -> int | None:
    """Block index of a norm from its HF name (``model.layers.3.ln_1`` -> 3); None for the final norm."""
    prefix = model_layout(model).blocks + "."
    return int(name[len(prefix):].split(".")[0]) if name.startswith(prefix) else None


def norm_groups(module: nn.Module) -> int:
    """Feature groups a norm normalizes separately: ``num_groups`` where the norm has groups
    (IBNorm), else one group per token (LayerNorm, RMSNorm, DyT, NormalNorm)."""
    groups = getattr(module, "num_groups", 1)
    return groups if isinstance(groups, int) and groups > 0 else 1


def _heads(recorded: torch.Tensor, module: nn.Module) -> int:
    """How many norm-width vectors one recorded row holds: heads for a query/key norm, else 1."""
    width = getattr(module, "dim", recorded.shape[1])
    return recorded.shape[1] // width if isinstance(width, int) and width > 0 else 1


Batch = torch.Tensor | Mapping[str, torch.Tensor]


def _batch_tensors(batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    if isinstance(batch, torch.Tensor):
        return batch, None, None
    if isinstance(batch, Mapping) and "input_ids" in batch:
        return batch["input_ids"], batch.get("attention_mask"), batch.get("labels")
    raise TypeError("batch must be a (B, T) tensor of token ids or a mapping with 'input_ids' (and optional "
                    f"'attention_mask', 'labels'), got {type(batch).__name__}")


def predictable_positions(batch: Batch) -> torch.Tensor:
    """(K, 2) [row, position] pairs whose next token is a real target.

    A position t counts when token t and token t+1 are both attended (``attention_mask``) and,
    where the batch carries HF-style ``labels`` (aligned with ``input_ids``, -100 = ignored),
    ``labels[t+1]`` is not ignored.
    """
    input_ids, attention_mask, labels = _batch_tensors(batch)
    if input_ids.dim() != 2 or input_ids.shape[1] < 2:
        raise ValueError(f"input_ids must have shape (B, T) with T >= 2, got {tuple(input_ids.shape)}")
    valid = torch.ones(input_ids.shape[0], input_ids.shape[1] - 1, dtype=torch.bool, device=input_ids.device)
    if attention_mask is not None:
        attended = attention_mask.bool()
        valid &= attended[:, :-1] & attended[:, 1:]
    if labels is not None:
        valid &= labels[:, 1:] != -100
    return valid.nonzero()


SAMPLE_MARGIN = 2
"""gather_tokens collects this many times n_tokens predictable tokens (when available) to sample from."""


def gather_tokens(batches: Iterable[Mapping[str, torch.Tensor]], n_tokens: int) -> dict[str, torch.Tensor]:
    """Concatenate same-length batches (e.g. the trainer's held-out batches) until they hold
    ``SAMPLE_MARGIN * n_tokens`` predictable tokens, or all of them; at least ``n_tokens`` or a
    clear error."""
    chosen, available = [], 0
    for batch in batches:
        chosen.append(batch)
        available += predictable_positions(batch).shape[0]
        if available >= SAMPLE_MARGIN * n_tokens:
            break
    if available < n_tokens:
        raise AnalysisError(
            f"the held-out batches give {available} predictable tokens but n_tokens={n_tokens}: lower "
            "analysis.n_tokens (--n-tokens) or give more held-out text (data.val_tokens, --val-tokens)"
        )
    return {key: torch.cat([batch[key] for batch in chosen]) for key in chosen[0]}


def sample_positions(batch: Batch, n_tokens: int, seed: int) -> torch.Tensor:
    """``n_tokens`` distinct predictable positions (n_tokens, 2), drawn with ``seed``."""
    positions = predictable_positions(batch)
    if positions.shape[0] < n_tokens:
        raise AnalysisError(
            f"the batch has {positions.shape[0]} predictable tokens but the analysis samples n_tokens={n_tokens}: "
            "give more held-out text or lower analysis.n_tokens (--n-tokens)"
        )
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(positions.shape[0], generator=generator)[:n_tokens].to(positions.device)
    return positions[chosen]


@dataclass
class Capture:
    """Activations at the sampled tokens, each (N, features), float32 on the CPU.

    ``states[0]`` is the input of block 0 (the embeddings) and ``states[l + 1]`` the output of
    block l; ``targets`` (N,) are the next-token ids; ``target_embeddings`` their rows of the
    input embedding matrix. ``norm_inputs`` / ``norm_outputs`` are keyed by HF module name;
    ``norm_groups`` and ``norm_blocks`` give each norm's feature groups and block (None = final).
    """

    states: list[torch.Tensor]
    targets: torch.Tensor
    target_embeddings: torch.Tensor
    norm_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    norm_outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    norm_groups: dict[str, int] = field(default_factory=dict)
    norm_blocks: dict[str, int | None] = field(default_factory=dict)


def _hidden(output: object) -> torch.Tensor:
    # Decoder blocks return a tensor or a tuple whose first entry is the hidden state.
    return output[0] if isinstance(output, (tuple, list)) else output


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def capture(model: nn.Module, batch: Batch, n_tokens: int, seed: int = 0, with_norms: bool = True) -> Capture:
    """Run ``model`` on ``batch`` (eval mode, no grad) and record activations at ``n_tokens``
    sampled predictable positions. The model's train/eval mode is restored afterwards."""
    input_ids, attention_mask, _ = _batch_tensors(batch)
    picked = sample_positions(batch, n_tokens, seed)
    rows, cols = picked[:, 0], picked[:, 1]
    targets = input_ids[rows, cols + 1]

    def select(hidden: torch.Tensor) -> torch.Tensor:
        # (B, T, d) -> (N, d); a per-head norm's (B, T, heads, head_dim) -> (N, heads * head_dim)
        return hidden[rows, cols].detach().float().flatten(1).cpu()

    blocks = decoder_blocks(model)
    states: list[torch.Tensor | None] = [None] * (len(blocks) + 1)
    norm_inputs: dict[str, torch.Tensor] = {}
    norm_outputs: dict[str, torch.Tensor] = {}
    handles = []

    def block_input_hook(_module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        states[0] = select(hidden)

    def block_output_hook(index: int):
        def hook(_module, _args, output):
            states[index + 1] = select(_hidden(output))
        return hook

    def norm_hook(name: str):
        def hook(_module, args, output):
            norm_inputs[name] = select(args[0])
            norm_outputs[name] = select(_hidden(output))
        return hook

    norms = norm_modules(model) if with_norms else {}
    try:
        handles.append(blocks[0].register_forward_pre_hook(block_input_hook, with_kwargs=True))
        for index, block in enumerate(blocks):
            handles.append(block.register_forward_hook(block_output_hook(index)))
        for name, module in norms.items():
            handles.append(module.register_forward_hook(norm_hook(name)))
        with _eval_mode(model), torch.no_grad():
            model(input_ids=input_ids, attention_mask=attention_mask)
            target_embeddings = model.get_input_embeddings()(targets).detach().float().cpu()
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i, state in enumerate(states) if state is None]
    if missing:
        raise RuntimeError(f"the forward pass did not run through block inputs/outputs {missing}")
    return Capture(
        states=states,
        targets=targets.cpu(),
        target_embeddings=target_embeddings,
        norm_inputs=norm_inputs,
        norm_outputs=norm_outputs,
        norm_groups={
            name: norm_groups(module) * _heads(norm_inputs[name], module) for name, module in norms.items()
        },
        norm_blocks={name: norm_block(model, name) for name in norms},
    )
