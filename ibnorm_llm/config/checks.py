"""Value checks that need more than a type or span sections: one place, keyed by dotted path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from .errors import ConfigError
from .resume import check_allow_changes
from .sections import DataConfig, EvalConfig, MuonConfig, OptimConfig, RunConfig

_POSITIVE_INT = (
    "data.seq_len", "data.val_tokens", "data.shuffle_buffer", "data.num_workers",
    "tokenizer.vocab_size", "tokenizer.train_max_documents", "train.max_steps", "train.micro_batch_size", "train.keep_last",
    "train.eval_batches", "train.log_every", "analysis.n_tokens", "monitor.attention_sequences",
)
_NON_NEGATIVE = (
    "optim.weight_decay", "optim.warmup_steps", "optim.grad_clip", "train.checkpoint_every",
    "train.eval_every", "analysis.every", "analysis.beta", "monitor.every", "optim.z_loss",
)


def check_eval(settings: EvalConfig, key_of: Callable[[str], str] = "eval.{}".format) -> None:
    """The evaluation settings wherever they come from: a run config, a study file (``key_of`` names a
    field as the reader wrote it, e.g. ``eval.limit``) or the flags of ``ibnorm-llm eval`` (``--limit``)."""
    if settings.batch_size <= 0:
        raise ConfigError(f"{key_of('batch_size')}={settings.batch_size}: must be a positive integer")
    for key in ("limit", "max_gen_toks"):
        value = getattr(settings, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{key_of(key)}={value}: must be a positive integer (or null)")
    if settings.tasks is not None and not settings.tasks:
        raise ConfigError(f"{key_of('tasks')}: name at least one task, or leave it out for the whole suite")


def check_values(cfg: RunConfig) -> None:
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
    check_eval(cfg.eval)
    _check_monitor(cfg)
    _check_test_split(cfg)
    _check_muon(cfg.optim)
    _check_wsd(cfg)
    for key in ("train.global_batch_size", "train.global_batch_tokens"):
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
    if cfg.train.overwrite and cfg.train.resume == "auto":
        raise ConfigError(
            "train.overwrite=true and train.resume=auto: choose one; train.resume=auto continues the run in its "
            "folder, train.overwrite=true (with train.resume=none) replaces it"
        )
    check_allow_changes(cfg)


# Keys that only mean something for one data.source: setting one for another source is an error,
# so `data.files=[x]` without `data.source=files` does not silently train on the built-in corpus.
_SOURCE_ONLY_KEYS = {
    "files": ("files", "txt_sample_by"),
    "hf": ("hf_name", "hf_config", "train_split", "val_split", "test_split", "shuffle_buffer", "num_workers"),
}


def _check_wsd(cfg: RunConfig) -> None:
    """optim.decay_* only under optim.schedule=wsd; the decay fits after the warmup."""
    optim, defaults = cfg.optim, OptimConfig()
    if optim.schedule != "wsd":
        for key in ("decay_fraction", "decay_shape"):
            if getattr(optim, key) != getattr(defaults, key):
                raise ConfigError(f"optim.{key} is set but optim.schedule={optim.schedule}: it shapes the wsd "
                                  f"schedule only; set optim.schedule=wsd or remove optim.{key}")
        return
    if not 0 < optim.decay_fraction <= 1:
        raise ConfigError(f"optim.decay_fraction={optim.decay_fraction}: must be in (0, 1] (the recipe's is 0.2)")
    decay = wsd_decay_steps(optim, cfg.train.max_steps)
    if optim.warmup_steps + decay > cfg.train.max_steps:
        raise ConfigError(f"optim.schedule=wsd: optim.warmup_steps={optim.warmup_steps} plus the decay's {decay} steps "
                          f"exceed train.max_steps={cfg.train.max_steps}; shorten the warmup or optim.decay_fraction")


def _check_monitor(cfg: RunConfig) -> None:
    monitor = cfg.monitor
    if monitor.spike_window < 4:
        raise ConfigError(f"monitor.spike_window={monitor.spike_window}: must be at least 4 (a running standard "
                          "deviation needs values; OLMo-core's default is 128)")
    if not monitor.spike_sigmas > 0:
        raise ConfigError(f"monitor.spike_sigmas={monitor.spike_sigmas}: must be > 0 (OLMo-core's default is 6)")


def wsd_decay_steps(optim: OptimConfig, max_steps: int) -> int:
    """How many final steps a wsd schedule of ``max_steps`` spends decaying (at least one)."""
    return max(1, round(optim.decay_fraction * max_steps))


def _check_muon(optim: OptimConfig) -> None:
    """optim.muon.* only under optim.name=muon, and each value in its range."""
    muon, defaults = optim.muon, MuonConfig()
    if optim.name != "muon":
        for key in (f.name for f in fields(MuonConfig)):
            if getattr(muon, key) != getattr(defaults, key):
                raise ConfigError(
                    f"optim.muon.{key} is set but optim.name={optim.name}: Muon's settings apply only to "
                    f"optim.name=muon; set optim.name=muon or remove optim.muon.{key}"
                )
        return
    if not muon.lr > 0:
        raise ConfigError(f"optim.muon.lr={muon.lr}: must be > 0")
    if not 0 <= muon.momentum < 1:
        raise ConfigError(f"optim.muon.momentum={muon.momentum}: must be in [0, 1) (the recipe's is 0.95)")
    if not 1 <= muon.ns_steps < 100:
        raise ConfigError(f"optim.muon.ns_steps={muon.ns_steps}: must be in [1, 99] (the recipe's is 5)")
    if muon.weight_decay < 0:
        raise ConfigError(f"optim.muon.weight_decay={muon.weight_decay}: must be >= 0")


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
