"""The run config's sections: one frozen dataclass per YAML section, each field documented
right under it; ``__post_init__`` checks what one section can check alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ibnorm_llm.norms import NormSpec

from .errors import ConfigError

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


EMBED_SCALE_INITS = ("sqrt_d",)
"""Named initial values of ``model.embed_scale.init``: sqrt_d is sqrt(d_model), the DyT/Derf LM codes'."""
ALPHA_INIT_RULES = ("dyt_width",)
"""Named rules for ``model.alpha_init`` (ibnorm_llm/models/recipes.py): dyt_width is the DyT paper's
alpha_0 by model width (arXiv 2503.10622, Tables 11 and 12)."""


@dataclass(frozen=True, kw_only=True)
class EmbedScaleConfig:
    """``model.embed_scale``: the token embeddings multiplied by a scalar s before the first block,
    x = s * E[ids] (GPT-2: s * (E[ids] + P[pos])), as the DyT (LLaMA) and Derf (GPT-2) LM codes do."""

    init: float | Literal["sqrt_d"] = "sqrt_d"
    """Initial value of s: sqrt_d (sqrt(d_model), the official codes') or a number > 0."""
    learnable: bool = True
    """Train s (a parameter of shape (1,), never weight-decayed) or keep it fixed (a buffer)."""

    def __post_init__(self) -> None:
        if not isinstance(self.init, str) and not (self.init > 0 and self.init != float("inf")):
            raise ConfigError(
                f"model.embed_scale.init={self.init}: must be a finite number > 0 or sqrt_d (sqrt(d_model))"
            )


@dataclass(frozen=True, kw_only=True)
class PositionAlphaInit:
    """``model.alpha_init`` as values: the initial alpha of every DyT/Derf norm at each position."""

    attention: float
    """Norms of the attention sub-layer (its input norm; under Peri-LN also its output norm)."""
    mlp: float
    """Norms of the MLP sub-layer (its input norm; under Peri-LN also its output norm)."""
    final: float
    """The final norm before the LM head."""

    def __post_init__(self) -> None:
        for name in ("attention", "mlp", "final"):
            value = getattr(self, name)
            if not (value > 0 and value != float("inf")):
                raise ConfigError(f"model.alpha_init.{name}={value}: must be a finite number > 0")


_NGPT_UNUSED = (
    "norm", "norm_overrides", "final_norm", "norm_placement", "mix_ln_fraction", "norm_scaling", "qk_norm",
    "init_std", "embed_init_std", "embed_scale", "alpha_init",
)
"""The model settings model.architecture=ngpt has no use for: they must keep their defaults."""


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
    norm_placement: Literal["pre", "post", "peri", "mix", "hybrid", "hybrid_star", "deepnorm"] = "pre"
    """Where the block norms sit: pre (Pre-LN, x + F(N(x))), post (Post-LN, N(x + F(x))), peri
    (Peri-LN, x + N_out(F(N_in(x)))), mix (Mix-LN: post in the first blocks, pre in the rest),
    hybrid (HybridNorm: query/key/value norms in attention, N(x) + F(N(x)) for the MLP), hybrid_star
    (HybridNorm*: pre in the first block) or deepnorm (DeepNorm: N(alpha x + F(x)), beta-scaled init);
    docs/baselines.md."""
    mix_ln_fraction: float | None = None
    """norm_placement=mix: share of blocks, counted from the first, that use Post-LN
    (floor(fraction * n_layers), in (0, 1)); None = the Mix-LN paper's 0.25."""
    norm_scaling: Literal["none", "lns"] = "none"
    """lns: LayerNorm Scaling, every norm output of block l (counted from 1) times 1/sqrt(l)."""
    qk_norm: NormConfig | None = None
    """A norm over each attention head's queries and keys (before RoPE); None = none."""
    deepnorm_alpha: float | None = None
    """norm_placement=deepnorm: the residual weight alpha; None = (2 n_layers)^(1/4), the decoder-only value."""
    deepnorm_beta: float | None = None
    """norm_placement=deepnorm: the init scale beta; None = (8 n_layers)^(-1/4), the decoder-only value."""
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
    """Std of the normal init of linear weights, and of the embeddings unless embed_init_std is set; None = 0.02."""
    embed_init_std: float | None = None
    """Std of the normal init of the embedding tables (LLaMA embed_tokens; GPT-2 wte and wpe; a tied LM head
    shares it); None = init_std. The Mix-LN and LayerNorm Scaling codes use sqrt(2/5) (docs/baselines.md)."""
    embed_scale: EmbedScaleConfig | None = None
    """Multiply the embeddings by a scalar before the first block (the DyT/Derf LM recipe); None = no scale."""
    alpha_init: Literal["dyt_width"] | PositionAlphaInit | None = None
    """Initial alpha of the DyT/Derf norms by position: {attention, mlp, final} values, or dyt_width (the
    DyT paper's values for the model's width); None = each norm spec's own alpha_init."""
    gradient_checkpointing: bool = False
    """Recompute block activations in the backward to save memory."""
    mlp_activation: Literal["gelu_new", "gelu"] | None = None
    """GPT-2 only: the MLP's GELU. None = gelu_new, the tanh approximation of transformers' and OpenAI's GPT-2;
    gelu = the exact GELU of nanoGPT (nn.GELU), the code of the Derf language model. LLaMA's MLP is SwiGLU."""
    architecture: Literal["standard", "ngpt"] = "standard"
    """standard (norm layers where model.norm* say) or ngpt: the normalized Transformer (nGPT, Loshchilov et al.,
    arXiv 2410.01131; LLaMA only): hidden states and weight vectors on the unit sphere, no norm layers, so
    every norm setting above must stay at its default (docs/baselines.md)."""

    def __post_init__(self) -> None:
        self._check_architecture()
        for name in ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_seq_len"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"model.{name}={value}: must be a positive integer (or null for the preset's)")
        if self.init_std is not None and not self.init_std > 0:
            raise ConfigError(f"model.init_std={self.init_std}: must be > 0 (or null for 0.02)")
        if self.embed_init_std is not None and not (0 < self.embed_init_std < float("inf")):
            raise ConfigError(
                f"model.embed_init_std={self.embed_init_std}: must be a finite number > 0 (or null for model.init_std)"
            )
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

        for name in ("deepnorm_alpha", "deepnorm_beta"):
            value = getattr(self, name)
            if value is None:
                continue
            if self.norm_placement != "deepnorm":
                raise ConfigError(
                    f"model.{name}={value} is set but model.norm_placement={self.norm_placement}: it applies "
                    "only to norm_placement=deepnorm; remove it or set that"
                )
            if not 0 < value < float("inf"):
                raise ConfigError(f"model.{name}={value}: must be a finite number > 0 (or null for the depth's value)")
        if self.qk_norm is not None and self.norm_placement in ("hybrid", "hybrid_star"):
            raise ConfigError(
                f"model.qk_norm is set but model.norm_placement={self.norm_placement}: HybridNorm has its own "
                "query/key/value norms (of model.norm's kind); remove model.qk_norm"
            )

    def _check_architecture(self) -> None:
        """architecture=ngpt has no norm layers: a norm setting would be silently unused, so it is refused."""
        if self.architecture != "ngpt":
            return
        defaults = ModelConfig()
        for key in _NGPT_UNUSED:
            if getattr(self, key) != getattr(defaults, key):
                raise ConfigError(
                    f"model.{key} is set but model.architecture=ngpt: nGPT has no norm layers (every vector is "
                    f"normalized to unit length instead) and its own initialization; remove model.{key}"
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
class MuonConfig:
    """``optim.muon``: Muon's own settings (optim.name=muon only). Defaults: Keller Jordan's Muon
    (kellerjordan.github.io/posts/muon, github.com/KellerJordan/Muon), see docs/training.md."""

    lr: float = 0.02
    """Peak learning rate of the Muon matrices; follows optim.lr's warmup and decay (scaled by lr / optim.lr)."""
    adjust_lr: Literal["original", "match_rms_adamw"] = "original"
    """Per-matrix rescaling of lr: original (Keller: sqrt(max(1, fan_out / fan_in))) or match_rms_adamw
    (Moonshot, arXiv 2502.16982: 0.2 * sqrt(max(fan_out, fan_in)), so that AdamW's lr and decay carry over)."""
    momentum: float = 0.95
    """Momentum of the gradient average that is orthogonalized."""
    nesterov: bool = True
    """Orthogonalize the Nesterov look-ahead (gradient blended with the momentum) instead of the momentum."""
    ns_steps: int = 5
    """Newton-Schulz iterations (quintic, coefficients (3.4445, -4.7750, 2.0315))."""
    ns_dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """Precision of the Newton-Schulz iteration: auto is bf16 on CUDA (the recipe) and fp32 on CPU, which
    has no bf16 arithmetic (emulated bf16 matmuls made a tiny Muon run 3x slower)."""
    weight_decay: float = 0.01
    """Decoupled decay of the Muon matrices (p -= lr * weight_decay * p)."""


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    name: Literal["adamw", "adam", "muon"] = "adamw"
    """adamw (decoupled decay), adam (the GaLore paper recipe) or muon (Muon for the hidden matrices of the
    decoder blocks, AdamW for everything else: embeddings, LM head, norms, biases, scalars)."""
    lr: float = 1e-3
    """Peak learning rate (under muon: of the AdamW parameters; optim.muon.lr is the matrices')."""
    betas: tuple[float, float] = (0.9, 0.95)
    """Adam betas."""
    eps: float = 1e-8
    """Adam epsilon."""
    weight_decay: float = 0.1
    """Decay of matrices only; norms, biases and embeddings are never decayed."""
    warmup_steps: int = 100
    """Linear warmup steps."""
    schedule: Literal["cosine", "linear", "constant", "wsd"] = "cosine"
    """Decay after warmup; wsd: warmup, stable at lr, then a decay over the last decay_fraction of the run."""
    decay_fraction: float = 0.2
    """optim.schedule=wsd: the share of max_steps the final decay takes."""
    decay_shape: Literal["linear", "1-sqrt"] = "linear"
    """optim.schedule=wsd: the decay's shape, linear or 1-sqrt (Hägele et al., arXiv 2405.18392)."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak."""
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""
    z_loss: float = 0.0
    """Weight of the z-loss, mean over target tokens of logsumexp(logits)^2 (PaLM), added to the
    training loss; 0 = not trained with (the logged loss stays the cross-entropy either way)."""
    muon: MuonConfig = field(default_factory=MuonConfig)
    """optim.name=muon: Muon's settings (setting one under another optim.name is an error)."""


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
    """none, auto (newest complete checkpoint of this run that loads) or a checkpoint directory."""
    overwrite: bool = False
    """Start afresh in a run folder that already holds checkpoints or metrics, replacing them (with
    train.resume=none); without it such a start is refused (see docs/reliability.md)."""
    resume_allow_changes: tuple[str, ...] = ()
    """Config keys (dotted, e.g. model.norm.lam, or a section such as optim) allowed to differ from the
    checkpoint's run config on resume; each change is recorded in run.json with the step it took effect.
    Keys in ibnorm_llm.config.resume.SAFE_ON_RESUME may always change."""
    eval_every: int = 500
    """Evaluate held-out loss every N steps (and at the end); 0 = only at the end."""
    eval_batches: int = 16
    """Micro batches per held-out evaluation: the first N of the data.val_tokens held-out rows (the
    test split of eval.test is always evaluated whole)."""
    log_every: int = 10
    """Write metrics every N steps."""
    skip_nonfinite: bool = False
    """Skip (and count) steps with a non-finite loss or gradient instead of stopping."""
    skip_spikes: bool = False
    """Skip the optimizer step (and count it) when the loss or the gradient norm spikes (monitor.spike_*:
    above the running mean by monitor.spike_sigmas standard deviations); any rank spiking skips on all."""
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


EVAL_SUITES = ("small", "v1", "v2", "all")
"""The evaluation suites by name (their tasks: ibnorm_llm/evaluation/harness/suites.py). small: the
small-model suite (cloze, above chance at 60M-350M); v1/v2: the Open LLM Leaderboards; all: v1 + v2."""
_SUITE_OR_NONE = ("none", *EVAL_SUITES)
SMOKE_MAX_GEN_TOKS = 32
"""Generation cap of smoke evaluations: enough to exercise generation and scoring, not to answer."""


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """How a checkpoint is evaluated: the ``eval`` section of a run config, a study file's ``eval``
    and the flags of ``ibnorm-llm eval`` (ibnorm_llm/evaluation/settings.py maps one onto the other)."""

    suite: Literal[_SUITE_OR_NONE] = "none"
    """Task suite run on final/ after training (single-process runs) or on a study's final runs;
    none = skip. One of EVAL_SUITES."""
    test: bool = False
    """Also evaluate the data test split on the final model: test_loss, test_ppl and test_bpb in the
    final metrics record (needs data.test_fraction > 0, or data.test_split with source=hf)."""
    limit: int | None = None
    """Examples per task (None = all)."""
    batch_size: int = 8
    """Fixed evaluation batch size (scores depend on it)."""
    offline_data: str | None = None
    """Local task data directory (the layout `ibnorm-llm prefetch` writes), or ``builtin`` for the smoke
    data shipped with the package; with smoke=true and nothing set, builtin."""
    smoke: bool = False
    """Short generations and partial task groups allowed (for offline smoke data)."""
    tasks: tuple[str, ...] | None = None
    """A subset of the suite's tasks (None = all)."""
    max_gen_toks: int | None = None
    """Cap on generated tokens for generative tasks."""
    allow_partial_groups: bool = False
    """Offline: score a group on the subtasks that have data (recorded in summary.json)."""
    seed: int | None = None
    """One seed for all harness seeds (Python, NumPy, torch, few-shot sampling); None = the harness's own."""
    perplexity: bool = True
    """Also measure the held-out perplexity of the checkpoint's own validation data."""


@dataclass(frozen=True, kw_only=True)
class AnalysisConfig:
    """Information-bottleneck analysis (ibnorm_llm.analysis; `ibnorm-llm analyze`)."""

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
class MonitorConfig:
    """Norm-centric telemetry while training (ibnorm_llm.train.monitor; docs/monitoring.md)."""

    every: int = 0
    """Log per-norm, per-block, per-parameter-group and output statistics every N steps (forward hooks
    exist on those steps only); 0 = off. Spike detection runs every step when this is > 0 or
    train.skip_spikes is true."""
    attention_sequences: int = 2
    """Sequences of each micro batch whose attention entropy and max logit are computed (from the
    queries and keys; the cost is quadratic in the sequence length)."""
    spike_window: int = 128
    """Spike detection: how many earlier values the running mean and standard deviation cover
    (OLMo-core's default); nothing is flagged before half of it is filled."""
    spike_sigmas: float = 6.0
    """Spike detection: a value above the running mean by more than this many standard deviations is a spike."""


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
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.run_name
