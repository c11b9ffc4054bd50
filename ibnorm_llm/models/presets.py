"""Model sizes as data: one frozen record per preset name.

The LLaMA sizes are the GaLore C4 configs (jiaweizzhao/GaLore configs/llama_*.json: untied
embeddings, 1024 positions); the GPT-2 sizes are OpenAI's 124M/355M (tied embeddings).
The ``-tiny`` presets (about 1-3M parameters at a 4096-token vocabulary) are for CPU runs
and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["llama", "gpt2"]

FAMILY_NORM_EPS: dict[str, float] = {"llama": 1e-6, "gpt2": 1e-5}
"""Default eps of every norm in a family: what its stock RMSNorm / LayerNorm uses."""

FAMILY_BASELINE_NORM: dict[str, str] = {"llama": "rmsnorm", "gpt2": "layernorm"}
"""The norm the stock transformers class uses; only these export to a stock checkpoint."""


@dataclass(frozen=True, kw_only=True)
class Preset:
    family: Family
    """llama (RMSNorm, SwiGLU, RoPE) or gpt2 (LayerNorm, GELU, learned positions)."""
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    max_seq_len: int
    tie_embeddings: bool
    """Share the token embedding with the LM head."""
    n_kv_heads: int | None = None
    """Key/value heads for grouped-query attention (LLaMA only); None = n_heads."""


PRESETS: dict[str, Preset] = {
    "llama-tiny": Preset(family="llama", d_model=128, n_layers=4, n_heads=4, d_ff=352, max_seq_len=512, tie_embeddings=False),
    "llama-60m": Preset(family="llama", d_model=512, n_layers=8, n_heads=8, d_ff=1376, max_seq_len=1024, tie_embeddings=False),
    "llama-130m": Preset(family="llama", d_model=768, n_layers=12, n_heads=12, d_ff=2048, max_seq_len=1024, tie_embeddings=False),
    "llama-350m": Preset(family="llama", d_model=1024, n_layers=24, n_heads=16, d_ff=2736, max_seq_len=1024, tie_embeddings=False),
    "llama-1b": Preset(family="llama", d_model=2048, n_layers=24, n_heads=32, d_ff=5461, max_seq_len=1024, tie_embeddings=False),
    "gpt2-tiny": Preset(family="gpt2", d_model=128, n_layers=4, n_heads=4, d_ff=512, max_seq_len=512, tie_embeddings=True),
    "gpt2-124m": Preset(family="gpt2", d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_seq_len=1024, tie_embeddings=True),
    "gpt2-355m": Preset(family="gpt2", d_model=1024, n_layers=24, n_heads=16, d_ff=4096, max_seq_len=1024, tie_embeddings=True),
}
