"""Data checks that run before training starts.

:func:`check_data_config` does the cheap ones (sizes against the model, files present and
non-empty, the text field present in the first row of every file or of the stream).
Content-level problems found only by reading everything (a blank file, an empty corpus after
dropping blank documents, a bad row further down a file, a corpus too small for one batch per
rank or for data.val_tokens) are raised as :class:`DataError` by ``build_train_loader`` and
``build_val_batches``, which the trainer calls before its first step.
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING

from ibnorm_llm.data.corpus import DataError, open_hf_stream, read_file_documents, resolve_files, stream_texts
from ibnorm_llm.data.loader import validation_row_count

if TYPE_CHECKING:
    from ibnorm_llm.config import RunConfig

def check_vocab_size(tokenizer, model_vocab_size: int) -> None:
    """The model's vocabulary must cover the tokenizer, padded at most as the model builder pads it."""
    from ibnorm_llm.models import padded_vocab_size  # one rounding rule, the model builder's

    size = len(tokenizer)
    if not size <= model_vocab_size <= padded_vocab_size(size):
        raise DataError(
            f"the model's vocab_size={model_vocab_size} does not match the tokenizer "
            f"(tokenizer.name_or_path={tokenizer.name_or_path!r} has {size} tokens): build the model with "
            f"vocab_size between {size} and {padded_vocab_size(size)}"
        )


def check_data_config(cfg: RunConfig, tokenizer, max_positions: int, model_vocab_size: int | None = None) -> None:
    """Raise DataError for data settings that cannot work with this tokenizer and model.

    ``max_positions`` is the model's position limit (``config.max_position_embeddings``);
    ``model_vocab_size``, when given, is checked against the tokenizer's size.
    """
    data = cfg.data
    if data.seq_len > max_positions:
        raise DataError(
            f"data.seq_len={data.seq_len} exceeds the model's {max_positions} positions (model.preset="
            f"{cfg.model.preset!r}): lower data.seq_len or raise model.max_seq_len"
        )
    if model_vocab_size is not None:
        check_vocab_size(tokenizer, model_vocab_size)
    validation_row_count(cfg, world_size=1)
    if data.source == "files":
        for path in resolve_files(data):
            next(iter(read_file_documents(path, data)))  # reads the first rows only
    elif data.source == "hf":
        splits = [data.train_split] + ([data.val_split] if data.val_split is not None else [])
        for split in splits:
            first = list(islice(stream_texts(open_hf_stream(data, split), data.text_field,
                                             f"{data.hf_name} ({split})"), 1))
            if not first:
                raise DataError(f"data.hf_name={data.hf_name!r} split {split!r} has no non-blank documents")
