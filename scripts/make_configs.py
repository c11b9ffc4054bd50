"""Write configs/*.yaml for the paper grid and the CPU configs from one table.

    python scripts/make_configs.py            # rewrite configs/
    python scripts/make_configs.py --check    # exit 1 if configs/ differs from this table

Recipes (docs/training.md, Configs): LLaMA follows the GaLore C4 recipe (t5-base
tokenizer, 256 tokens, pad without packing, 512 sequences per step, Adam, warmup 10% of
steps, cosine to 10%, no clipping, whole model in bf16); GPT-2 follows nanoGPT/llm.c
(GPT-2 BPE, 1024 tokens, 2^19 tokens per step, AdamW (0.9, 0.95), decay 0.1, clip 1.0,
warmup 700, cosine, bf16 autocast) on FineWeb-Edu. IBNorm runs use lambda = 4, the paper's
best value in most runs. The 2025-26 baselines (Derf, SeeDNorm, Peri-LN, Mix-LN, LayerNorm
Scaling; docs/baselines.md) run in the same LLaMA recipe at 60M and 130M, and on the CPU, with
the settings of their authors' code that are not the training recipe: DyT and Derf with the
DyT/Derf LM recipe (embeddings times a learnable sqrt(d_model), alpha_0 by position from the DyT
paper's width table, no norm bias), Mix-LN and LayerNorm Scaling with their codes' embedding init
(std sqrt(2/5)). nGPT (model.architecture=ngpt, no norm layers) keeps each recipe as it is: its
official recipe's weight decay 0 and no warmup (NVIDIA/ngpt train.py) are training-recipe settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# name, preset, steps, warmup, peak lr, micro batch per device (divides 512 at 1, 2, 4 or 8 GPUs)
LLAMA = [
    ("llama60m", "llama-60m", 10_000, 1_000, 1e-3, 64),
    ("llama130m", "llama-130m", 20_000, 2_000, 1e-3, 64),
    ("llama350m", "llama-350m", 60_000, 6_000, 5e-4, 32),
    ("llama1b", "llama-1b", 100_000, 10_000, 5e-4, 16),
]
# name, preset, steps, peak lr, micro batch, FineWeb-Edu sample (10B tokens for 124M, ~31B for 355M)
GPT2 = [
    ("gpt2_124m", "gpt2-124m", 19_073, 6e-4, 32, "sample-10BT"),
    ("gpt2_355m", "gpt2-355m", 60_000, 3e-4, 16, "sample-100BT"),
]
IBNORM_VARIANTS = {"s": "S", "l": "L", "t": "T"}
LAM = 4.0
BASELINE_SIZES = ("llama60m", "llama130m")
# The DyT/Derf LM recipe (docs/baselines.md): the embeddings times a learnable scalar initialized to
# sqrt(d_model) (jiachenzhu/DyT other_tasks/LLaMA, zlab-princeton/Derf "language model"), alpha_0 by
# position from the DyT paper's width table (arXiv 2503.10622, Tables 11-12), no bias in the norm.
DYT_LM_RECIPE = {"alpha_init": "dyt_width", "embed_scale": {"init": "sqrt_d", "learnable": True}}
# The Mix-LN (pixeli99/MixLN) and LayerNorm Scaling (lmsdss/LayerNorm-Scaling) codes draw the token
# embeddings with std sqrt(2/5) in LlamaPreTrainedModel._init_weights, for every norm type.
MIX_LN_EMBED_INIT_STD = (2 / 5) ** 0.5
# name -> model section: a norm function or a placement/scaling of RMSNorm or IBNorm-L (docs/baselines.md)
BASELINES: dict[str, dict] = {
    "dyt": {"norm": {"kind": "dyt", "bias": False}, **DYT_LM_RECIPE},
    "derf": {"norm": {"kind": "derf", "bias": False}, **DYT_LM_RECIPE},
    "seednorm": {"norm": {"kind": "seednorm"}},
    "rmsnorm_peri": {"norm": {"kind": "rmsnorm"}, "norm_placement": "peri"},
    "rmsnorm_mix": {"norm": {"kind": "rmsnorm"}, "norm_placement": "mix", "embed_init_std": MIX_LN_EMBED_INIT_STD},
    "rmsnorm_lns": {"norm": {"kind": "rmsnorm"}, "norm_scaling": "lns", "embed_init_std": MIX_LN_EMBED_INIT_STD},
    "ibnorm_l_peri": {"norm": {"kind": "ibnorm", "variant": "L", "lam": LAM}, "norm_placement": "peri"},
    # HybridNorm (BryceZhuo/HybridNorm) and DeepNorm (microsoft/torchscale): the placement brings its
    # code's init scaling (alpha and beta of DeepNorm from the depth); docs/baselines.md
    "rmsnorm_hybrid": {"norm": {"kind": "rmsnorm"}, "norm_placement": "hybrid"},
    "rmsnorm_hybrid_star": {"norm": {"kind": "rmsnorm"}, "norm_placement": "hybrid_star"},
    "rmsnorm_deepnorm": {"norm": {"kind": "rmsnorm"}, "norm_placement": "deepnorm"},
    # nGPT (NVIDIA/ngpt): its init values and scalings are the official ones, set by the model itself
    "ngpt": {"architecture": "ngpt"},
}
_LAYOUT_WORDS = {
    ("norm_placement", "peri"): "in the Peri-LN placement",
    ("norm_placement", "mix"): "in the Mix-LN placement (Post-LN in the first quarter of blocks)",
    ("norm_scaling", "lns"): "with LayerNorm Scaling",
    ("norm_placement", "hybrid"): "in the HybridNorm placement (QKV norms, Post-Norm FFN)",
    ("norm_placement", "hybrid_star"): "in the HybridNorm* placement (HybridNorm, Pre-Norm first block)",
    ("norm_placement", "deepnorm"): "in the DeepNorm placement (Post-LN, residual x alpha, init x beta)",
}


def _norms(baseline: str) -> dict[str, dict]:
    norms = {baseline: {"kind": baseline}}
    for suffix, variant in IBNORM_VARIANTS.items():
        norms[f"ibnorm_{suffix}"] = {"kind": "ibnorm", "variant": variant, "lam": LAM}
    return norms


def _describe(model: dict) -> str:
    if model.get("architecture") == "ngpt":
        return "nGPT (the normalized Transformer: no norm layers, unit-norm vectors; docs/baselines.md)"
    norm = model["norm"]
    words = [f"IBNorm-{norm['variant']} (lambda {norm['lam']:g})" if norm["kind"] == "ibnorm" else norm["kind"]]
    words += [text for (key, value), text in _LAYOUT_WORDS.items() if model.get(key) == value]
    if "embed_scale" in model:
        words.append("in the DyT/Derf LM recipe")
    if "embed_init_std" in model:
        words.append(f"and embedding init std {model['embed_init_std']:.4g} (its code's)")
    return " ".join(words)


def llama_config(name, preset, steps, warmup, lr, micro, norm_name, model) -> tuple[str, dict]:
    header = (
        f"# {preset} with {_describe(model)}: GaLore C4 recipe (reference.md). {steps} steps x 512 x 256 tokens.\n"
        "# Launch: accelerate launch --config_file launch/ddp.yaml scripts/pretrain.py "
        f"--config {name}_{norm_name}.yaml\n"
    )
    return header, {
        "run_name": f"{name}_{norm_name}",
        "model": {"preset": preset, **model},
        "data": {
            "source": "hf", "hf_name": "allenai/c4", "hf_config": "en", "train_split": "train",
            "val_split": "validation", "text_field": "text", "seq_len": 256, "packing": "pad",
        },
        "tokenizer": {"name_or_path": "t5-base"},
        "optim": {
            "name": "adam", "lr": lr, "betas": [0.9, 0.999], "weight_decay": 0.0, "warmup_steps": warmup,
            "schedule": "cosine", "min_lr_ratio": 0.1, "grad_clip": 0.0,
        },
        "train": {
            "max_steps": steps, "micro_batch_size": micro, "global_batch_size": 512, "precision": "bf16-pure",
            "checkpoint_every": 1000, "eval_every": 1000, "eval_batches": 64,
        },
    }


def gpt2_config(name, preset, steps, lr, micro, sample, norm_name, model) -> tuple[str, dict]:
    header = (
        f"# {preset} with {_describe(model)}: nanoGPT/llm.c recipe on FineWeb-Edu {sample} (reference.md).\n"
        f"# {steps} steps x 2^19 tokens. Launch: accelerate launch --config_file launch/ddp.yaml "
        f"scripts/pretrain.py --config {name}_{norm_name}.yaml\n"
    )
    return header, {
        "run_name": f"{name}_{norm_name}",
        "model": {"preset": preset, **model},
        "data": {
            # FineWeb-Edu has only a train split: the held-out split is carved from the stream.
            "source": "hf", "hf_name": "HuggingFaceFW/fineweb-edu", "hf_config": sample, "train_split": "train",
            "val_split": None, "text_field": "text", "seq_len": 1024, "packing": "concat",
        },
        "tokenizer": {"name_or_path": "gpt2"},
        "optim": {
            "name": "adamw", "lr": lr, "betas": [0.9, 0.95], "weight_decay": 0.1, "warmup_steps": 700,
            "schedule": "cosine", "min_lr_ratio": 0.1, "grad_clip": 1.0,
        },
        "train": {
            "max_steps": steps, "micro_batch_size": micro, "global_batch_tokens": 524_288,
            "precision": "bf16-mixed", "checkpoint_every": 1000, "eval_every": 250, "eval_batches": 20,
        },
    }


def tiny_config(family, norm_name, model) -> tuple[str, dict]:
    name = f"{family}_tiny_{norm_name}"
    header = (
        f"# CPU-sized {family} with {_describe(model)} on the built-in offline corpus, fp32.\n"
        f"# python scripts/pretrain.py --config {name}.yaml\n"
    )
    return header, {
        "run_name": name,
        "model": {"preset": f"{family}-tiny", **model},
        "data": {"source": "builtin", "seq_len": 128, "packing": "concat"},
        "optim": {
            "name": "adamw", "lr": 3e-3, "betas": [0.9, 0.95], "weight_decay": 0.1, "warmup_steps": 20,
            "schedule": "cosine", "min_lr_ratio": 0.1, "grad_clip": 1.0,
        },
        "train": {
            "max_steps": 300, "micro_batch_size": 16, "precision": "fp32", "checkpoint_every": 100,
            "eval_every": 100, "eval_batches": 8, "log_every": 10,
        },
        "logging": {"wandb": "off"},
        "monitor": {"every": 50},
    }


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for short lists such as betas."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))

SECTION_NOTES = {
    "llama": {
        "data": "C4 en streamed from the hub; each document truncated/padded to 256 tokens, pad masked from the loss",
        "optim": "plain Adam, no weight decay, no clipping; warmup 10% of steps, cosine to 10% of the peak",
        "train": "512 sequences per step; the whole model cast to bf16 (GaLore's --dtype bfloat16)",
    },
    "gpt2": {
        "data": "FineWeb-Edu streamed from the hub, documents joined with EOS and cut into 1024-token blocks",
        "optim": "AdamW (0.9, 0.95), decay 0.1 on matrices only, clip 1.0, warmup 700, cosine to 10%",
        "train": "2^19 = 524,288 tokens per step; bf16 autocast with fp32 master weights",
    },
    "tiny": {
        "data": "offline built-in corpus (Python's own documentation) with the default SentencePiece tokenizer",
        "train": "fp32: bf16 is over 100x slower on CPUs",
        "monitor": "per-norm, per-block and per-parameter-group statistics every 50 steps (about 1 % of the step time; "
                   "docs/monitoring.md) and loss/gradient-norm spike events",
    },
}


def _render(header: str, body: dict, notes: dict[str, str]) -> str:
    lines = []
    for line in yaml.dump(body, Dumper=_Dumper, sort_keys=False).splitlines():
        key = line.split(":", 1)[0]
        if not line.startswith(" ") and key in notes:
            lines.append(f"# {notes[key]}")
        lines.append(line)
    return header + "\n".join(lines) + "\n"


def all_configs() -> dict[str, str]:
    """File name -> YAML text."""
    entries = []
    for name, preset, steps, warmup, lr, micro in LLAMA:
        models = {norm_name: {"norm": norm} for norm_name, norm in _norms("rmsnorm").items()}
        if name in BASELINE_SIZES:
            models |= BASELINES
        for norm_name, model in models.items():
            entries.append((f"{name}_{norm_name}", "llama", llama_config(name, preset, steps, warmup, lr, micro, norm_name, model)))
    for name, preset, steps, lr, micro, sample in GPT2:
        for norm_name, norm in _norms("layernorm").items():
            entries.append((f"{name}_{norm_name}", "gpt2", gpt2_config(name, preset, steps, lr, micro, sample, norm_name, {"norm": norm})))
    for family, baseline in (("llama", "rmsnorm"), ("gpt2", "layernorm")):
        entries.append((f"{family}_tiny_{baseline}", "tiny", tiny_config(family, baseline, {"norm": {"kind": baseline}})))
        ib_l = _norms(baseline)["ibnorm_l"]
        entries.append((f"{family}_tiny_ibnorm_l", "tiny", tiny_config(family, "ibnorm_l", {"norm": ib_l})))
    for norm_name, model in BASELINES.items():
        entries.append((f"llama_tiny_{norm_name}", "tiny", tiny_config("llama", norm_name, model)))
    return {
        f"{stem}.yaml": _render(header, body, SECTION_NOTES[kind]) for stem, kind, (header, body) in entries
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare configs/ with the table")
    args = parser.parse_args()
    stale = []
    for file_name, text in all_configs().items():
        path = CONFIG_DIR / file_name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(file_name)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"configs/ is out of date for: {', '.join(stale)}; run python scripts/make_configs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
