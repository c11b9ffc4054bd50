"""What a run measures: held-out loss and bits per byte, throughput, model FLOPs utilization, and metrics.jsonl.

Token counts in a metrics record:

- ``tokens``: tokens trained on so far, over all ranks: label positions that are not padding
  (labels != -100). The model predicts each from the ones before it, so the first position of
  a row is never a loss target; it is counted all the same, so that with ``data.packing=concat``
  this is exactly steps x global batch x seq_len; with ``data.packing=pad`` the padding is not
  counted.
- ``tokens_per_s``: those tokens per second of training (evaluation and checkpoint time
  excluded).
- ``mfu``: computed from token POSITIONS per second, padding included, because the model spends
  its FLOPs on pad positions too; None when the device's peak is unknown (see
  :func:`peak_flops_notice`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ibnorm_llm.data.loader import IGNORE_INDEX
from ibnorm_llm.data.token_bytes import TokenBytes

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


def peak_flops_notice(device: str, device_name: str, peak: float | None) -> str | None:
    """The line to show once when MFU cannot be computed on a GPU (``device`` like "cuda:0"), else None.

    A CPU has no entry in the table by design, so it gets no notice.
    """
    if peak is not None or not device.startswith("cuda"):
        return None
    return (
        f"MFU not logged: {device_name} is not in the peak FLOP/s table; set train.peak_flops to its dense "
        "bf16 peak FLOP/s per device (e.g. train.peak_flops=989e12 for an H100 SXM) to log it"
    )


def mfu(positions_per_s: float, flops_per_tok: int, peak_flops_per_device: float | None, n_devices: int) -> float | None:
    """Achieved / peak FLOP/s over all devices from token positions (padding included) per second;
    None when the peak is unknown."""
    if peak_flops_per_device is None or positions_per_s <= 0:
        return None
    return positions_per_s * flops_per_tok / (peak_flops_per_device * n_devices)


@torch.no_grad()
def held_out_totals(
    model: torch.nn.Module, batches, device: torch.device | str, byte_table: TokenBytes | None = None
) -> torch.Tensor:
    """``[sum of next-token losses, number of predicted tokens]`` over ``batches`` (float64, on ``device``),
    plus a third entry, the UTF-8 bytes those tokens spell, when ``byte_table`` is given.

    The one held-out loss of the project: the trainer reduces it across ranks, the perplexity of
    a checkpoint divides it directly. No host sync; the model's train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    table = byte_table.to(device) if byte_table is not None else None
    totals = torch.zeros(2 if table is None else 3, device=device, dtype=torch.float64)
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        n_targets = (batch["labels"][:, 1:] != IGNORE_INDEX).sum().double()  # the model shifts labels by one
        # A batch without targets has a NaN mean loss; it adds nothing instead of poisoning the sum.
        weighted = torch.where(n_targets > 0, model(**batch).loss.double() * n_targets, 0.0)
        parts = [weighted, n_targets]
        if table is not None:
            parts.append(table.count(batch["input_ids"], batch["labels"], IGNORE_INDEX).double())
        totals += torch.stack(parts)
    model.train(was_training)
    return totals


def bits_per_byte(loss: float, tokens: float, n_bytes: float) -> float | None:
    """Bits per byte of text, ``loss * tokens / (ln 2 * bytes)`` from a mean loss in nats per token;
    tokenizer-independent, so models with different vocabularies compare on it. None without bytes."""
    if n_bytes <= 0:
        return None
    return loss * tokens / (math.log(2) * n_bytes)


def held_out_metrics(totals: list[float], prefix: str) -> dict[str, float | None]:
    """``{prefix_loss, prefix_ppl, prefix_bpb}`` from summed :func:`held_out_totals` (with bytes)."""
    loss_sum, count, n_bytes = totals
    loss = loss_sum / max(count, 1.0)
    return {
        f"{prefix}_loss": loss,
        f"{prefix}_ppl": math.exp(min(loss, 700.0)),
        f"{prefix}_bpb": bits_per_byte(loss, count, n_bytes),
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep it readable instead of crashing
    return value


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps({k: _json_safe(v) for k, v in record.items()}) + "\n"


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

    def merge_into(self, step: int, values: dict[str, Any]) -> None:
        """Add ``values`` to the record of ``step`` (the last one), rewriting the file atomically;
        appended as a record of its own when that step was never logged."""
        if not self.enabled:
            return
        self.close()
        records = read_metrics(self.path) if self.path.exists() else []
        if records and records[-1]["step"] == step:
            records[-1].update(values)
        else:
            records.append({"step": step, **values})
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(_json_line(r) for r in records))
        tmp.replace(self.path)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a")
        self._file.write(_json_line(record))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
