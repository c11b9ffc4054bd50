"""Run configuration: frozen dataclasses per section, YAML as their serialization.

Merge order: dataclass defaults <- YAML file <- ``dotted.key=value`` overrides.
Every key is checked: an unknown key, a wrong type or an invalid value raises
:class:`ConfigError` naming the dotted key, and for unknown keys the closest valid one.

    cfg = load_config("configs/llama_tiny_ibnorm_l.yaml", ["train.max_steps=20"])
    cfg.model.norm.kind        # 'ibnorm'
    save_config(cfg, "runs/x/config.yaml")
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ibnorm_llm.norms import (
    NormOptionError,
    NormSpec,
    check_norm_spec,
    option_names,
    option_types,
)


class ConfigError(ValueError):
    """A bad configuration: the message names the dotted key and the fix."""


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 scalars: ``off``/``no`` stay strings and ``3e-3``
    is a float (YAML 1.1 reads them as false and as a string, which surprises on a command line)."""


_BOOL, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Yaml12Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse config YAML (files and ``key=value`` values) with YAML 1.2 scalar rules."""
    return yaml.load(text, Loader=_Yaml12Loader)


# --------------------------------------------------------------------------------------
# Sections


NormConfig = NormSpec
"""``model.norm``, ``model.final_norm`` and ``model.norm_overrides[].norm``: ``{kind, **options}``
(see :class:`ibnorm_llm.norms.NormSpec`); checked against the norm registry when the config loads."""


@dataclass(frozen=True, kw_only=True)
class NormOverride:
    """A different norm for a range of decoder blocks (the paper's open question 2)."""

    layers: str
    """Inclusive block range 'first-last' (e.g. '0-3') or a single block index ('5')."""
    norm: NormConfig
    """The norm those blocks use instead of ``model.norm``."""

    def block_indices(self) -> range:
        text = str(self.layers).strip()
        try:
            first, dash, last = text.partition("-")
            first_i = int(first)
            last_i = int(last) if dash else first_i  # '5-' is an error, not block 5
        except ValueError:
            raise ConfigError(
                f"model.norm_overrides[].layers={self.layers!r}: expected 'first-last' like '0-3' or one index like '5'"
            ) from None
        if first_i < 0 or last_i < first_i:
            raise ConfigError(f"model.norm_overrides[].layers={self.layers!r}: need 0 <= first <= last")
        return range(first_i, last_i + 1)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    preset: str = "llama-tiny"
    """A preset name from ibnorm_llm.models.presets.PRESETS, e.g. llama-60m or gpt2-124m."""
    norm: NormConfig = field(default_factory=NormConfig)
    """The norm of every block and of the final norm (unless overridden)."""
    norm_overrides: tuple[NormOverride, ...] = ()
    """Per-block-range norms; later entries win where ranges overlap."""
    final_norm: NormConfig | None = None
    """The norm before the LM head; None = same as ``model.norm``."""
    norm_placement: Literal["pre", "post", "peri", "mix"] = "pre"
    """Where the block norms sit: pre (Pre-LN, x + F(N(x))), post (Post-LN, N(x + F(x))), peri
    (Peri-LN, x + N_out(F(N_in(x)))) or mix (Mix-LN: post in the first blocks, pre in the rest)."""
    mix_ln_fraction: float | None = None
    """norm_placement=mix: share of blocks, counted from the first, that use Post-LN
    (floor(fraction * n_layers), in (0, 1)); None = the Mix-LN paper's 0.25."""
    norm_scaling: Literal["none", "lns"] = "none"
    """lns: LayerNorm Scaling, every norm output of block l (counted from 1) times 1/sqrt(l)."""
    qk_norm: NormConfig | None = None
    """A norm over each attention head's queries and keys (before RoPE); None = none."""
    d_model: int | None = None
    """Override the preset's width."""
    n_layers: int | None = None
    """Override the preset's depth."""
    n_heads: int | None = None
    """Override the preset's attention heads."""
    n_kv_heads: int | None = None
    """Override the preset's key/value heads (LLaMA only)."""
    d_ff: int | None = None
    """Override the preset's MLP width."""
    max_seq_len: int | None = None
    """Override the preset's maximum positions."""
    tie_embeddings: bool | None = None
    """Share the token embedding with the LM head; None = the preset's choice (LLaMA untied, GPT-2 tied)."""
    init_std: float | None = None
    """Std of the normal init of linear and embedding weights; None = 0.02."""
    gradient_checkpointing: bool = False
    """Recompute block activations in the backward to save memory."""

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_seq_len"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"model.{name}={value}: must be a positive integer (or null for the preset's)")
        if self.init_std is not None and not self.init_std > 0:
            raise ConfigError(f"model.init_std={self.init_std}: must be > 0 (or null for 0.02)")
        if self.mix_ln_fraction is not None:
            if self.norm_placement != "mix":
                raise ConfigError(
                    f"model.mix_ln_fraction={self.mix_ln_fraction} is set but model.norm_placement="
                    f"{self.norm_placement}: it applies only to norm_placement=mix; remove it or set that"
                )
            if not 0 < self.mix_ln_fraction < 1:
                raise ConfigError(
                    f"model.mix_ln_fraction={self.mix_ln_fraction}: must be in (0, 1), the share of blocks "
                    "using Post-LN (e.g. 0.25, the paper's)"
                )

    def norm_for_block(self, index: int) -> NormConfig:
        chosen = self.norm
        for override in self.norm_overrides:
            if index in override.block_indices():
                chosen = override.norm
        return chosen


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    source: Literal["builtin", "files", "hf"] = "builtin"
    """builtin (offline corpus from Python's own docs), files (local text/JSONL/Parquet) or hf (hub, streamed)."""
    files: tuple[str, ...] = ()
    """source=files: paths or globs of .txt, .jsonl/.json or .parquet files."""
    txt_sample_by: Literal["document", "paragraph", "line"] = "paragraph"
    """source=files, .txt files: one document per file, per blank-line-separated paragraph, or per line."""
    hf_name: str = "allenai/c4"
    """source=hf: dataset name (or a local dataset directory with the same layout)."""
    hf_config: str | None = "en"
    """source=hf: dataset configuration name."""
    train_split: str = "train"
    """source=hf: split to train on."""
    val_split: str | None = "validation"
    """source=hf: split for held-out evaluation; None = hold out data.val_fraction of the train split by hash."""
    text_field: str = "text"
    """Field holding the document text (JSONL, Parquet, hub)."""
    seq_len: int = 256
    """Tokens per training sequence."""
    packing: Literal["concat", "pad"] = "concat"
    """concat: documents joined with EOS and cut into seq_len blocks; pad: one document per row, padded (GaLore)."""
    val_fraction: float = 0.05
    """Share of documents held out for validation (chosen by a hash of the text; local corpora and hf without val_split)."""
    test_fraction: float = 0.0
    """Share of documents held out as a test split, by the same hash, disjoint from train and validation
    (0 = no test split). source=hf carves it from train_split unless test_split names a split of its own."""
    test_split: str | None = None
    """source=hf: a dataset split to use as the test split instead of carving data.test_fraction out of train_split."""
    val_tokens: int = 8192
    """Held-out tokens used for evaluation, in total over all ranks (val_tokens // seq_len rows, pad included)."""
    shuffle_seed: int = 42
    """Seed of the document/stream shuffle."""
    shuffle_buffer: int = 10000
    """source=hf: documents per shuffle window (a resume re-reads at most one window)."""
    num_workers: int = 1
    """source=hf: background threads tokenizing the stream ahead of training."""
    cache_dir: str = ".cache/ibnorm_llm/tokens"
    """Where token shards of local and built-in corpora are cached."""


@dataclass(frozen=True, kw_only=True)
class TokenizerConfig:
    name_or_path: str = "tokenizers/builtin-sp-4k"
    """A hub tokenizer (t5-base, gpt2) or a local directory. Local when it exists, starts with '.', '/' or '~',
    or lies under tokenizers/; anything else is a hub name."""
    train_if_missing: bool = True
    """When name_or_path is a missing local directory: train a SentencePiece tokenizer there on data.*."""
    vocab_size: int = 4096
    """Vocabulary size when training a SentencePiece tokenizer."""
    model_type: Literal["bpe", "unigram"] = "bpe"
    """SentencePiece algorithm when training."""
    train_max_documents: int = 200000
    """At most this many corpus documents are used to train a SentencePiece tokenizer."""


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    name: Literal["adamw", "adam"] = "adamw"
    """adamw (decoupled decay) or adam (the GaLore paper recipe)."""
    lr: float = 1e-3
    """Peak learning rate."""
    betas: tuple[float, float] = (0.9, 0.95)
    """Adam betas."""
    eps: float = 1e-8
    """Adam epsilon."""
    weight_decay: float = 0.1
    """Decay of matrices only; norms, biases and embeddings are never decayed."""
    warmup_steps: int = 100
    """Linear warmup steps."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warmup."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak."""
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    max_steps: int = 1000
    """Optimizer steps to train."""
    micro_batch_size: int = 8
    """Sequences per device per forward pass."""
    global_batch_size: int | None = None
    """Sequences per optimizer step across all devices (set this or global_batch_tokens)."""
    global_batch_tokens: int | None = None
    """Tokens per optimizer step across all devices (set this or global_batch_size)."""
    seed: int = 0
    """Seed of initialization, dropout and data order."""
    precision: Literal["fp32", "bf16-mixed", "bf16-pure"] = "fp32"
    """fp32 (CPU), bf16-mixed (autocast, fp32 master weights) or bf16-pure (the paper: whole model in bf16)."""
    checkpoint_every: int = 1000
    """Save a checkpoint every N steps (and always at the end); 0 = only at the end."""
    keep_last: int = 3
    """Keep the newest K step checkpoints (final/ is always kept)."""
    resume: str = "none"
    """none, auto (newest complete checkpoint of this run) or a checkpoint directory."""
    eval_every: int = 500
    """Evaluate held-out loss every N steps (and at the end); 0 = only at the end."""
    eval_batches: int = 16
    """Micro batches per held-out evaluation: the first N of the data.val_tokens held-out rows (the
    test split of eval.test is always evaluated whole)."""
    log_every: int = 10
    """Write metrics every N steps."""
    skip_nonfinite: bool = False
    """Skip (and count) steps with a non-finite loss or gradient instead of stopping."""
    peak_flops: float | None = None
    """Peak FLOP/s per device for MFU when the device is not in the built-in table."""
    compile: bool = False
    """torch.compile the model (in place; per decoder block under FSDP2)."""
    allow_slow_cpu_bf16: bool = False
    """Run bf16-mixed/bf16-pure on a machine without CUDA (emulated, >100x slower than fp32; for tests)."""
    reuse_freed_memory: bool = True
    """CPU runs: keep freed memory in the process for the next step (glibc mallopt; see train/cpu_memory.py)."""


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    wandb: Literal["auto", "off", "offline", "online"] = "auto"
    """auto = online with WANDB_API_KEY set, else offline."""
    wandb_project: str = "ibnorm_llm"
    """W&B project name."""
    progress: bool = True
    """Progress bar on the main process."""


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    suite: Literal["none", "small", "v1", "v2", "all"] = "none"
    """Task suite run in-process on final/ after training (single-process runs); none = skip.
    small: the small-model suite (cloze, above chance at 60M-350M); v1/v2/all: the Open LLM Leaderboards."""
    test: bool = False
    """Also evaluate the data test split on the final model: test_loss, test_ppl and test_bpb in the
    final metrics record (needs data.test_fraction > 0, or data.test_split with source=hf)."""
    limit: int | None = None
    """Examples per task (None = all)."""
    batch_size: int = 8
    """Fixed evaluation batch size (scores depend on it)."""
    offline_data: str | None = None
    """Local task data directory (eval/offline_data layout)."""
    smoke: bool = False
    """Short generations and partial task groups allowed (for offline smoke data)."""


@dataclass(frozen=True, kw_only=True)
class AnalysisConfig:
    """Information-bottleneck analysis (ibnorm_llm.analysis; scripts/analyze.py)."""

    every: int = 0
    """Log per-layer IB values and activation statistics every N steps; 0 = off."""
    n_tokens: int = 1024
    """Tokens sampled for the mutual-information estimates (at least 16)."""
    beta: float = 1.0
    """IB trade-off: I(Y;T_l) - beta * I(T_{l-1};T_l)."""
    alpha: float = 1.01
    """Renyi entropy order (> 0, != 1; 1.01 approximates Shannon)."""
    width_rule: Literal["median_scaled", "median", "silverman"] = "median_scaled"
    """Gaussian kernel width: median_scaled (median distance x d_eff^(1/3); keeps the dependent/
    independent gap in high dimension), median (median distance) or silverman (Silverman's rule)."""
    target: Literal["onehot", "embedding"] = "onehot"
    """Representation of the next-token target Y: onehot (token identity) or embedding (input embedding row)."""
    seed: int = 0
    """Seed of the token sample (and of the shuffles behind the chance levels)."""
    chance: bool = True
    """Also estimate each MI term with one side shuffled (the estimator's bias without dependence)."""

    def __post_init__(self) -> None:
        if self.n_tokens < 16:
            raise ConfigError(
                f"analysis.n_tokens={self.n_tokens}: the estimates need at least 16 tokens (1024 is the default)"
            )
        if not (self.alpha > 0 and self.alpha != 1):
            raise ConfigError(f"analysis.alpha={self.alpha}: the Renyi order must be > 0 and != 1 (e.g. 1.01)")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    run_name: str = "run"
    """Folder name under out_dir; also the W&B run name."""
    out_dir: str = "runs"
    """Where run folders are created."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.run_name


# --------------------------------------------------------------------------------------
# Value checks that need more than a type: one place, keyed by dotted path.

_POSITIVE_INT = (
    "data.seq_len", "data.val_tokens", "data.shuffle_buffer", "data.num_workers",
    "tokenizer.vocab_size", "tokenizer.train_max_documents", "train.max_steps", "train.micro_batch_size", "train.keep_last",
    "train.eval_batches", "train.log_every", "analysis.n_tokens", "eval.batch_size",
)
_NON_NEGATIVE = (
    "optim.weight_decay", "optim.warmup_steps", "optim.grad_clip", "train.checkpoint_every",
    "train.eval_every", "analysis.every", "analysis.beta",
)


def _check_values(cfg: RunConfig) -> None:
    for key in _POSITIVE_INT:
        value = _get(cfg, key)
        if value <= 0:
            raise ConfigError(f"{key}={value}: must be a positive integer")
    for key in _NON_NEGATIVE:
        value = _get(cfg, key)
        if value < 0:
            raise ConfigError(f"{key}={value}: must be >= 0")
    if not cfg.optim.lr > 0:
        raise ConfigError(f"optim.lr={cfg.optim.lr}: must be > 0")
    if not 0 <= cfg.optim.min_lr_ratio <= 1:
        raise ConfigError(f"optim.min_lr_ratio={cfg.optim.min_lr_ratio}: must be in [0, 1]")
    if not all(0 <= b < 1 for b in cfg.optim.betas):
        raise ConfigError(f"optim.betas={list(cfg.optim.betas)}: each must be in [0, 1)")
    if not 0 < cfg.data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction={cfg.data.val_fraction}: must be in (0, 1)")
    _check_test_split(cfg)
    for key in ("train.global_batch_size", "train.global_batch_tokens", "eval.limit"):
        value = _get(cfg, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{key}={value}: must be a positive integer (or null)")
    if cfg.train.global_batch_size is not None and cfg.train.global_batch_tokens is not None:
        raise ConfigError(
            "train.global_batch_size and train.global_batch_tokens are both set: set only one "
            "(sequences or tokens per optimizer step)"
        )
    _check_source_keys(cfg.data)
    if cfg.data.source == "files" and not cfg.data.files:
        raise ConfigError("data.files is empty but data.source=files: list text/JSONL/Parquet paths or globs")
    if not cfg.run_name or "/" in cfg.run_name:
        raise ConfigError(f"run_name={cfg.run_name!r}: must be a non-empty folder name without '/'")
    for override in cfg.model.norm_overrides:
        override.block_indices()


# Keys that only mean something for one data.source: setting one for another source is an error,
# so `data.files=[x]` without `data.source=files` does not silently train on the built-in corpus.
_SOURCE_ONLY_KEYS = {
    "files": ("files", "txt_sample_by"),
    "hf": ("hf_name", "hf_config", "train_split", "val_split", "test_split", "shuffle_buffer", "num_workers"),
}


def _check_test_split(cfg: RunConfig) -> None:
    data = cfg.data
    if not 0 <= data.test_fraction < 1 or data.val_fraction + data.test_fraction >= 1:
        raise ConfigError(
            f"data.test_fraction={data.test_fraction}: must be in [0, 1) with data.val_fraction + data.test_fraction "
            f"< 1 (data.val_fraction={data.val_fraction}), so that documents remain to train on"
        )
    if data.test_split is not None and data.test_fraction > 0:
        raise ConfigError(
            f"data.test_split={data.test_split!r} and data.test_fraction={data.test_fraction} are both set: the test "
            "split is either a dataset split of its own or carved out of train_split by hash; set only one"
        )
    if cfg.eval.test and data.test_fraction == 0 and data.test_split is None:
        raise ConfigError(
            "eval.test=true but the data has no test split: set data.test_fraction (e.g. 0.05) to hold out a share "
            "of documents by hash, or (data.source=hf) data.test_split to a split of the dataset"
        )


def _check_source_keys(data: DataConfig) -> None:
    defaults = DataConfig()
    for source, keys in _SOURCE_ONLY_KEYS.items():
        if data.source == source:
            continue
        for key in keys:
            if getattr(data, key) != getattr(defaults, key):
                raise ConfigError(
                    f"data.{key} is set but data.source={data.source}: it applies only to data.source={source}; "
                    f"set data.source={source} or remove data.{key}"
                )


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# --------------------------------------------------------------------------------------
# dict <-> dataclass with strict type checking


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "list of " + _type_name(typing.get_args(tp)[0])
    return getattr(tp, "__name__", str(tp))


def _norm_spec(value: Any, key: str) -> NormSpec:
    """A norm spec from its YAML mapping, checked once against the norm registry: the kind, each
    option's name and type (from the norm's constructor signature) and its value."""
    if isinstance(value, NormSpec):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping with kind and that norm's options, got {value!r}")
    kind = _convert(value.get("kind", "rmsnorm"), str, f"{key}.kind")
    try:
        types_ = option_types(kind)  # unknown kind: "kind='ibnrom': unknown norm; did you mean ..."
    except ValueError as err:
        raise ConfigError(f"{key}.{err}") from None
    options = {}
    for name, option in value.items():
        if name == "kind":
            continue
        if name not in option_names():
            close = difflib.get_close_matches(str(name), ["kind", *option_names()], n=1)
            hint = f"; did you mean '{key}.{close[0]}'?" if close else f"; valid keys: kind, {', '.join(option_names())}"
            raise ConfigError(f"unknown config key '{key}.{name}'{hint}")
        if option is None:  # unset: the norm's default (config.yaml files list every option, unset ones as null)
            continue
        if name not in types_:
            raise ConfigError(f"{key}.{name}: kind {kind!r} does not take option {name!r} (it takes: {', '.join(types_)})")
        options[name] = _convert(option, types_[name], f"{key}.{name}")
    spec = NormSpec(kind, **options)
    try:
        check_norm_spec(spec)
    except NormOptionError as err:
        raise ConfigError(f"{key}.{err}") from None
    return spec


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in canonical form."""
    if tp is NormSpec:
        return _norm_spec(value, key)
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: null is not allowed; expected {_type_name(tp)}")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}={value!r}: expected {_type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r}: must be one of {', '.join(map(str, allowed))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            if typing.get_args(tp)[-1] is Ellipsis and isinstance(value, str):
                value = [value]  # a single path where a list of paths is expected
            else:
                raise ConfigError(f"{key}={value!r}: expected {_type_name(tp)}")
        args = typing.get_args(tp)
        if args[-1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}={list(value)!r}: expected {len(args)} values")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)  # YAML writes 1e6 as a float
            raise ConfigError(f"{key}={value!r}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r}: expected a number")
        value = float(value)
        if math.isnan(value):
            raise ConfigError(f"{key}=nan: expected a number")
        return value
    if tp is str:
        if not isinstance(value, str):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)  # e.g. layers: 5, or a run name that YAML read as a number
            raise ConfigError(f"{key}={value!r}: expected a string")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {key}")


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
        kwargs[key] = _convert(value, hints[key], prefix + key)
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field without a value
        raise ConfigError(f"{prefix or 'config'}: {err}") from None


def to_dict(obj: Any) -> Any:
    """Plain YAML-serializable form (tuples become lists)."""
    if isinstance(obj, NormSpec):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------
# Files and overrides


CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path as given, or a bare name looked up in ``configs/`` (``.yaml`` optional)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    # configs/ of the checkout this package runs from (editable install), then of the working directory.
    candidates = [d / name for d in (CONFIG_DIR, Path("configs")) for name in (path.name, f"{path.name}.yaml")]
    for candidate in candidates:
        if path.parent == Path(".") and candidate.is_file():
            return candidate
    available = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))
    close = difflib.get_close_matches(path.name, available, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ConfigError(f"config file '{name_or_path}' not found (looked in . and {CONFIG_DIR}).{hint}")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``model.norm.lam=4`` -> ("model.norm.lam", 4); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected dotted.key=value, e.g. train.max_steps=100")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err})") from None
    return key.strip(), value


def config_from_tree(tree: dict[str, Any]) -> RunConfig:
    cfg = from_dict(RunConfig, tree)
    _check_values(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Defaults <- YAML at ``path`` (a path or a name in configs/) <- ``key=value`` overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        resolved = resolve_config_path(path)
        try:
            tree = yaml_load(resolved.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{resolved}: not valid YAML ({err})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{resolved}: the top level must be a mapping of sections")
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    return config_from_tree(tree)


def config_to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_to_yaml(cfg))


def replace(obj: Any, dotted: str, value: Any) -> Any:
    """A copy of a (nested) frozen config with one dotted key changed and re-validated."""
    tree = to_dict(obj)
    _set_dotted(tree, dotted, value)
    if isinstance(obj, RunConfig):
        return config_from_tree(tree)
    return from_dict(type(obj), tree)
