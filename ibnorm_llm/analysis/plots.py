"""PNG plots of analysis reports, several checkpoints overlaid (e.g. RMSNorm vs IBNorm-L)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_ib(reports: Mapping[str, dict], path: str | Path) -> Path:
    """IB value, I(Y; T_l) and I(T_{l-1}; T_l) per block, one line per report (label -> report)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (
        ("ib_value", None, "IB value  I(Y;T_l) − β·I(T_{l−1};T_l)"),
        ("i_target", "i_target_chance", "I(Y; T_l)"),
        ("i_previous", "i_previous_chance", "I(T_{l−1}; T_l)"),
    )
    for ax, (key, chance_key, title) in zip(axes, panels, strict=True):
        for label, report in reports.items():
            blocks = [row["layer"] for row in report["layers"]]
            (line,) = ax.plot(blocks, [row[key] for row in report["layers"]], marker="o", label=label)
            chance = [row.get(chance_key) if chance_key else None for row in report["layers"]]
            if chance_key and all(value is not None for value in chance):
                ax.plot(blocks, chance, linestyle=":", color=line.get_color(), label=f"{label} (shuffled)")
        ax.set_title(title)
        ax.set_xlabel("decoder block")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("bits")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_kurtosis(reports: Mapping[str, dict], path: str | Path) -> Path:
    """Excess kurtosis and share beyond 3 std of each norm's input and output, in forward order."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    stats = (("excess_kurtosis", "excess kurtosis"), ("frac_beyond_3std", "share of values beyond 3 std"))
    for ax, (key, title) in zip(axes, stats, strict=True):
        names: list[str] = []
        for index, (label, report) in enumerate(reports.items()):
            norms = report["norms"]
            names = names if len(names) >= len(norms) else [norm["name"] for norm in norms]
            positions = range(len(norms))
            color = f"C{index % 10}"  # one colour per checkpoint; dashed = norm input, solid = output
            for when, style in (("before", "--"), ("after", "-")):
                values = [norm[when][key] for norm in norms]
                ax.plot(positions, [float("nan") if v is None else v for v in values], style, color=color,
                        marker="o", markersize=3, label=f"{label} {when} norm")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([_short(name) for name in names], rotation=70, fontsize=7)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    kurtoses = [abs(norm[when]["excess_kurtosis"] or 0.0)
                for report in reports.values() for norm in report["norms"] for when in ("before", "after")]
    if max(kurtoses, default=0.0) > 20.0:
        axes[0].set_yscale("symlog", linthresh=1.0)  # outlier features: linear near 0, logarithmic beyond
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _short(name: str) -> str:
    """model.layers.3.input_layernorm -> 3.input_layernorm"""
    parts = name.split(".")
    return ".".join(parts[2:]) if len(parts) > 3 else name


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
