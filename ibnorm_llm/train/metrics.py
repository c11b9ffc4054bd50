"""Throughput, model FLOPs utilization and the metrics.jsonl writer."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# Dense bf16 tensor-core peak FLOP/s per device (no sparsity), from the vendors' datasheets.
# Matched as a substring of torch.cuda.get_device_name(); longer names are tried first so
# "H100 PCIe" wins over "H100".
PEAK_FLOPS_BF16: dict[str, float] = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "H800": 989e12,
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "A800": 312e12,
    "A10G": 125e12,
    "A10": 125e12,
    "L40S": 362e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
    "V100": 125e12,
    "MI300X": 1307e12,
    "MI250X": 383e12,
}


def flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int) -> int:
    """Training FLOPs per token: 6N for the matmuls (forward + backward) plus attention.

    ``12 * n_layers * d_model * seq_len`` is the attention score and value products
    (PaLM appendix B; nanoGPT's ``estimate_mfu``). N counts every trainable parameter.
    """
    return 6 * n_params + 12 * n_layers * d_model * seq_len


def peak_flops_for(device_name: str, override: float | None = None) -> float | None:
    """Peak FLOP/s of one device: ``override`` when given, else the table, else None (e.g. CPU)."""
    if override is not None:
        return override
    for name in sorted(PEAK_FLOPS_BF16, key=len, reverse=True):
        if name.lower() in device_name.lower():
            return PEAK_FLOPS_BF16[name]
    return None


def mfu(tokens_per_s: float, flops_per_tok: int, peak_flops_per_device: float | None, n_devices: int) -> float | None:
    """Achieved / peak FLOP/s over all devices; None when the peak is unknown."""
    if peak_flops_per_device is None or tokens_per_s <= 0:
        return None
    return tokens_per_s * flops_per_tok / (peak_flops_per_device * n_devices)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep it readable instead of crashing
    return value


class MetricsWriter:
    """Appends one JSON object per logged step to ``metrics.jsonl`` (main process only)."""

    def __init__(self, path: Path, enabled: bool):
        self.path = Path(path)
        self.enabled = enabled
        self._file = None

    def truncate_after(self, step: int) -> None:
        """Drop records beyond ``step``: on resume, a killed run's later records are replaced."""
        if not self.enabled or not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a")
        self._file.write(json.dumps({k: _json_safe(v) for k, v in record.items()}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
