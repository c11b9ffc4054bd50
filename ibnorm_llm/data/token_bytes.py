"""How many bytes of text each token stands for: the denominator of bits per byte.

Bits per byte (``loss * tokens / (ln 2 * bytes)``) does not depend on the tokenizer, so models
with different vocabularies compare on it. The bytes are the UTF-8 bytes of the text the target
tokens spell, counted per token id from the vocabulary (no decoding at evaluation time):

- byte-level BPE (GPT-2): every character of a piece is one byte (the alphabet maps bytes 1:1);
- SentencePiece: ``<0xHH>`` byte-fallback pieces are one byte, ``▁`` is a space, the rest is
  the piece's UTF-8; a SentencePiece tokenizer that adds a dummy ``▁`` before each document
  (stripped again by its decoder) counts that space as 0 bytes where the previous token is a
  special one (EOS between packed documents);
- special tokens (BOS, EOS, pad, unk) are 0 bytes: predicting EOS costs loss but spells no text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
_SP_SPACE = "\u2581"


@dataclass(frozen=True)
class TokenBytes:
    """Per-token-id byte counts of one tokenizer (int64 tensors of the tokenizer's length)."""

    per_token: torch.Tensor
    """UTF-8 bytes of each token's piece."""
    dummy_prefix: torch.Tensor
    """1 where the piece starts with a dummy-prefix space that does not count after a special token."""
    special: torch.Tensor
    """True for special token ids."""

    def to(self, device: torch.device | str) -> TokenBytes:
        return TokenBytes(self.per_token.to(device), self.dummy_prefix.to(device), self.special.to(device))

    def count(self, input_ids: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
        """Bytes of the predicted tokens of a batch (labels shifted by one, as the loss does)."""
        targets = labels[:, 1:]
        mask = targets != ignore_index
        ids = targets.clamp(min=0)
        after_special = self.special[input_ids[:, :-1].clamp(min=0)]
        n_bytes = self.per_token[ids] - self.dummy_prefix[ids] * after_special
        return (n_bytes * mask).sum()


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and "ByteLevel" in repr(backend.decoder)


def _adds_dummy_prefix(tokenizer) -> bool:
    """Whether encoding a bare word yields a leading ▁ that decoding strips again."""
    ids = tokenizer("a", add_special_tokens=False)["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    return bool(pieces) and pieces[0].startswith(_SP_SPACE) and not tokenizer.decode(ids).startswith(" ")


def _piece_bytes(piece: str, byte_level: bool) -> int:
    if byte_level:
        return len(piece)
    if _BYTE_PIECE.match(piece):
        return 1
    return len(piece.replace(_SP_SPACE, " ").encode("utf-8"))


def token_bytes(tokenizer) -> TokenBytes:
    """The byte table of ``tokenizer`` (a Hugging Face tokenizer)."""
    byte_level = _is_byte_level(tokenizer)
    dummy = not byte_level and _adds_dummy_prefix(tokenizer)
    size = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    special_ids = set(tokenizer.all_special_ids)
    per_token = torch.zeros(size, dtype=torch.int64)
    prefix = torch.zeros(size, dtype=torch.int64)
    special = torch.zeros(size, dtype=torch.bool)
    for token_id, piece in enumerate(pieces):
        if token_id in special_ids or piece is None:
            special[token_id] = token_id in special_ids
            continue
        per_token[token_id] = _piece_bytes(piece, byte_level)
        prefix[token_id] = int(dummy and piece.startswith(_SP_SPACE))
    return TokenBytes(per_token, prefix, special)
