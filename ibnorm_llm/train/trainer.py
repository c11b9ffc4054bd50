"""The training loop: ``train(cfg)`` runs one config to its final checkpoint.

    session = setup(cfg)                 # refuse bad settings, build, wrap, restore, run.json
    while step < max_steps:
        train_step(session, ...)         # micro batches, one host sync, optimizer step
        log / evaluate / analyse         # periodic_report (+ the test split on the last step, eval.test)
        save a checkpoint                # periodic_checkpoint
    finish(session)                      # the eval.suite leaderboard on final/, if asked

Distribution and precision are applied in distributed.wrap_model only; the loop calls the
strategy's methods (train.strategies) and never asks which one runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed

from ibnorm_llm.analysis import gather_tokens, layer_report
from ibnorm_llm.analysis.capture import norm_modules
from ibnorm_llm.checkpoint import RUN_CONFIG_FILE
from ibnorm_llm.config import ConfigError, RunConfig, save_config, wsd_decay_steps, yaml_load
from ibnorm_llm.config.eval_flags import default_eval_dir
from ibnorm_llm.config.resume import resume_changes
from ibnorm_llm.data import IGNORE_INDEX, build_train_loader, build_val_batches, check_data_config, load_tokenizer
from ibnorm_llm.data.token_bytes import TokenBytes, token_bytes
from ibnorm_llm.models import build_model, count_parameters
from ibnorm_llm.train import checkpoint as ckpt
from ibnorm_llm.train import run_folder
from ibnorm_llm.train.batching import BatchPlan, batch_notice, batch_source, plan_batches
from ibnorm_llm.train.cpu_memory import reuse_freed_memory
from ibnorm_llm.train.distributed import (
    build_accelerator,
    build_strategy,
    check_shared_out_dir,
    describe,
    read_launch,
    wrap_model,
)
from ibnorm_llm.train.final_eval import FinalEval, check_final_eval
from ibnorm_llm.train.metrics import (
    MetricsWriter,
    flops_per_token,
    held_out_metrics,
    held_out_totals,
    mfu,
    peak_flops_for,
    peak_flops_notice,
)
from ibnorm_llm.train.monitor import (
    MonitorHooks,
    SpikeDetector,
    Tally,
    gain_stats,
    grad_sq_sums,
    moved_most,
    output_stats,
    snapshot,
    update_stats,
    z_loss,
)
from ibnorm_llm.train.monitor.tally import no_reduce
from ibnorm_llm.train.optim import build_optimizer, describe_split, lr_at, set_lr, summarize_split
from ibnorm_llm.train.saturation_watch import binarizing_warnings, saturation_record, saturation_watch
from ibnorm_llm.train.strategies import Strategy
from ibnorm_llm.train.tracking import Tracker, package_versions, quiet_libraries, wandb_run_id, write_run_metadata


class NonFiniteError(RuntimeError):
    """A non-finite loss or gradient with train.skip_nonfinite=false."""


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    final_checkpoint: Path
    steps: int
    tokens: int
    """Target tokens trained on (labels != -100, all ranks)."""
    train_loss: float | None
    """Mean training loss over the last logging window."""
    eval_loss: float | None
    tokens_per_s: float | None
    """Mean training throughput in target tokens/s of this process group (evaluation and checkpoints excluded)."""
    eval_scores: dict[str, float]
    """eval.suite headline values keyed 'eval/<task>'; empty with eval.suite=none."""
    spike_skipped: int = 0
    """Optimizer steps skipped for a spike (train.skip_spikes), earlier launches of a resumed run included."""


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def resolve_resume(cfg: RunConfig, warn=_warn) -> Path | None:
    """The checkpoint to continue from: none, the newest complete one whose files are whole (auto;
    unreadable newer ones are skipped with a warning), or a path."""
    if cfg.train.resume == "none":
        return None
    if cfg.train.resume == "auto":
        tried = []
        for path in ckpt.candidates(cfg.run_dir):
            problem = ckpt.checkpoint_problem(path)
            if problem is None:
                return path
            warn(f"checkpoint {path} cannot be resumed from: {problem}; trying the next older one")
            tried.append(f"{path.name} ({problem})")
        if tried:
            raise ConfigError(
                f"train.resume=auto: no checkpoint of {cfg.run_dir} can be resumed from; tried {'; '.join(tried)}. "
                "Restore a checkpoint from a copy, or start afresh with train.resume=none train.overwrite=true"
            )
        return None
    path = Path(cfg.train.resume)
    ckpt.read_state(path)  # raises a ConfigError naming train.resume if incomplete or missing
    if problem := ckpt.checkpoint_problem(path):
        raise ConfigError(f"train.resume={path}: the checkpoint cannot be resumed from: {problem}; point train.resume "
                          "at an older checkpoint of the run")
    return path


def saved_run_config(resume: Path) -> dict[str, Any] | None:
    """The run config saved beside the checkpoint's weights, as a YAML tree; None for a checkpoint
    from before config.yaml was saved there."""
    saved = resume / RUN_CONFIG_FILE
    return (yaml_load(saved.read_text()) or {}) if saved.is_file() else None


def resume_config_changes(cfg: RunConfig, resume: Path, saved: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Compare cfg with the run config ``saved`` in the checkpoint (see ibnorm_llm.config.resume):
    refused differences raise ConfigError; allowed ones (train.resume_allow_changes) are returned."""
    if saved is None:
        return []
    return resume_changes(saved, cfg, str(resume / RUN_CONFIG_FILE))


def check_nothing_left(cfg: RunConfig, resume: Path, state: ckpt.TrainerState) -> None:
    """A checkpoint at train.max_steps trains nothing: fine if final/ exists, an error otherwise."""
    final = ckpt.checkpoints_root(cfg.run_dir) / "final"
    if state.step >= cfg.train.max_steps and not ckpt.is_complete(final):
        raise ConfigError(
            f"train.resume={resume}: the checkpoint is at step {state.step}, already at train.max_steps="
            f"{cfg.train.max_steps}, so nothing would be trained and {final} would not be written. "
            f"Raise train.max_steps above {state.step} to continue training."
        )


def check_wsd_branch(cfg: RunConfig, resume: Path, state: ckpt.TrainerState, saved: dict[str, Any] | None) -> None:
    """A wsd run resumed under another train.max_steps (a branch) equals a run straight to the new budget
    only if no step so far was in either budget's decay: refuse a branch point past a decay start."""
    if cfg.optim.schedule != "wsd" or saved is None:
        return
    saved_steps = (saved.get("train") or {}).get("max_steps")
    if not isinstance(saved_steps, int) or saved_steps == cfg.train.max_steps:
        return
    starts = {steps: steps - wsd_decay_steps(cfg.optim, steps) for steps in (saved_steps, cfg.train.max_steps)}
    if state.step > min(starts.values()):
        raise ConfigError(
            f"train.resume={resume}: a wsd branch must start in the stable phase, but the checkpoint is at step "
            f"{state.step} and the decay starts at step {starts[cfg.train.max_steps]} for train.max_steps="
            f"{cfg.train.max_steps} and at step {starts[saved_steps]} for the checkpoint's train.max_steps={saved_steps}; "
            f"branch from a checkpoint at or before step {min(starts.values())}"
        )


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of an FSDP2 DTensor (no communication); plain tensors as they are."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _culprit(model: torch.nn.Module, loss: float) -> str:
    if not math.isfinite(loss):
        return f"loss={loss}"
    for name, param in model.named_parameters():
        if param.grad is not None and not torch.isfinite(_local(param.grad)).all():
            return f"gradient of parameter '{name}'"
    return "gradient norm (no single local gradient is non-finite; sharded or reduced)"


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole value of an FSDP2 DTensor (a collective: every rank calls it); plain tensors as they are."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


@torch.no_grad()
def _learnable_lams(model: torch.nn.Module) -> dict[str, float]:
    """Current lambda of every IBNorm with learnable_lam, keyed 'lam/<module name>' (every rank calls it)."""
    return {
        f"lam/{name}": float(_full(module.lam_value))
        for name, module in model.named_modules()
        if getattr(module, "learnable_lam", False)
    }


def evaluate(model, val_batches, accelerator) -> tuple[float, float]:
    """Held-out loss (token-weighted mean over all ranks) and perplexity."""
    totals = held_out_totals(model, val_batches, accelerator.device)
    loss_sum, count = accelerator.reduce(totals, reduction="sum").tolist()
    loss = loss_sum / max(count, 1.0)
    return loss, math.exp(min(loss, 700.0))


def evaluate_split(model, batches, accelerator, byte_table: TokenBytes, prefix: str) -> dict[str, float | None]:
    """``{prefix_loss, prefix_ppl, prefix_bpb}`` over ``batches`` (token-weighted, all ranks)."""
    totals = held_out_totals(model, batches, accelerator.device, byte_table)
    return held_out_metrics(accelerator.reduce(totals, reduction="sum").tolist(), prefix)


@dataclass
class Session:
    """Everything setup() builds for the loop."""

    cfg: RunConfig
    accelerator: Accelerator
    strategy: Strategy
    plan: BatchPlan
    tokenizer: Any
    model: torch.nn.Module | None
    optimizer: torch.optim.Optimizer | None
    loader: Any
    """The resumable training loader (data.build_train_loader): next() gives a batch, state_dict() its position."""
    val_batches: list
    test_batches: list | None
    """The test split (eval.test), evaluated once, on the last step; else None."""
    byte_table: TokenBytes
    """UTF-8 bytes per token id, for bits per byte."""
    flops_tok: int
    """Training FLOPs per token, for MFU."""
    peak_flops: float | None
    resume: Path | None
    start: ckpt.TrainerState
    """Where this launch starts: step 0, or the state of the checkpoint it resumes."""
    metrics: MetricsWriter
    tracker: Tracker
    analysis_batch: Any
    """Held-out tokens for the IB analysis (analysis.every > 0), else None."""
    final_eval: FinalEval | None
    """The eval.suite runner on final/ (the caller's: train does not import evaluation)."""
    spikes: SpikeDetector | None = None
    """Loss and gradient-norm spike detection (monitor.every > 0 or train.skip_spikes), else None."""


@dataclass
class Progress:
    """Counters of the loop and the current logging window (throughput excludes eval and checkpoints)."""

    step: int
    tokens: int
    skipped: int
    window_losses: list[float] = field(default_factory=list)
    window_steps: int = 0
    window_tokens: int = 0
    window_start: float = field(default_factory=time.perf_counter)
    train_time: float = 0.0
    trained_tokens: int = 0
    last_eval: float | None = None
    record: dict[str, Any] = field(default_factory=dict)
    spike_skipped: int = 0
    """Steps skipped for a loss or gradient-norm spike (train.skip_spikes), earlier launches of a resumed run included."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Monitor statistics and spike events of the current step: written in that step's record."""
    last_grad_norms: dict[str, float] | None = None
    """Per parameter group gradient norms of the last monitor step: what a spike is compared with."""


def _build(cfg: RunConfig, accelerator, strategy, plan):
    """Tokenizer, model (seeded by train.seed only), wrapped model and optimizer, data; plus the
    parameter count, training FLOPs per token and which optimizer trains which parameters."""
    set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(cfg)
    model = build_model(
        cfg.model, len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    check_data_config(cfg, tokenizer, model.config.max_position_embeddings, model.config.vocab_size)
    # Counted before wrapping: DeepSpeed's engine has a different config and ZeRO-3 empties parameters.
    n_params = count_parameters(model)
    flops_tok = flops_per_token(n_params, model.config.num_hidden_layers, model.config.hidden_size, cfg.data.seq_len)
    split = describe_split(model, cfg.optim)  # names as the optimizer sees them, before any wrapper
    model, optimizer = wrap_model(
        cfg, accelerator, strategy, model, lambda m: build_optimizer(m, cfg.optim), plan
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    loader = build_train_loader(cfg, tokenizer, rank=rank, world_size=world)
    val_batches = build_val_batches(cfg, tokenizer, rank=rank, world_size=world)
    return tokenizer, model, optimizer, loader, val_batches, n_params, flops_tok, split


def _restore(resume: Path, accelerator, strategy, model, optimizer, loader) -> None:
    """Weights and optimizer state through the strategy, then this rank's data position and RNG streams."""
    strategy.load_state(model, optimizer, resume, ckpt.state_dir(resume))
    rank_state = ckpt.load_rank_state(resume, accelerator.process_index)
    loader.load_state_dict(rank_state["data"])
    ckpt.set_rng_state(rank_state["rng"])


def _config_changes(cfg: RunConfig, resume: Path | None, start_step: int, changes: list[dict]) -> list[dict]:
    """run.json's record of allowed config changes: the earlier launches' (up to this start) and this one's."""
    earlier = []
    run_json = cfg.run_dir / "run.json"
    if resume is not None and run_folder.is_inside(resume, cfg.run_dir) and run_json.is_file():
        try:
            earlier = json.loads(run_json.read_text()).get("config_changes") or []
        except ValueError:
            earlier = []
    return [c for c in earlier if c.get("step", 0) < start_step] + [{**c, "step": start_step} for c in changes]


def setup(cfg: RunConfig, final_eval: FinalEval | None = None) -> Session:
    """Refuse bad settings before any work, build and wrap, restore train.resume, write run.json.

    Every check (settings, run folder, resume checkpoint and its run config, free space, weights)
    passes before the first write into the run folder: a refused start changes no file there.
    """
    run_folder.check_out_dir(cfg)
    launch = read_launch()
    accelerator = build_accelerator(cfg, launch)  # refuses bf16 on CPU before any work
    main = accelerator.is_main_process
    quiet_libraries(main)
    world = accelerator.num_processes
    check_final_eval(cfg.eval, world, final_eval)
    plan = plan_batches(cfg.train, cfg.data.seq_len, world)
    strategy = build_strategy(accelerator, launch, cfg.train.precision)
    resume = resolve_resume(cfg, warn=_warn if main else lambda message: None)
    run_folder.check_fresh_start(cfg, resume)
    start = ckpt.TrainerState(0, 0, 0, world, plan.grad_accum, plan.micro_batch_size, strategy.state_format)
    changes: list[dict[str, Any]] = []
    if resume is not None:
        saved = ckpt.read_state(resume)
        saved_config = saved_run_config(resume)
        changes = resume_config_changes(cfg, resume, saved_config)
        ckpt.check_compatible(saved, resume, world, plan.grad_accum, plan.micro_batch_size, strategy.state_format)
        ckpt.check_same_optimizer(resume, cfg.optim.name)
        check_nothing_left(cfg, resume, saved)
        check_wsd_branch(cfg, resume, saved, saved_config)
        start = replace(saved, state_format=strategy.state_format)  # recorded in checkpoints from now on
    # CPU steps allocate and free the same large blocks every step: keep them instead of faulting
    # their pages in again (see cpu_memory.py).
    cpu_malloc = reuse_freed_memory(accelerator.device.type, cfg.train.reuse_freed_memory)
    tokenizer, model, optimizer, loader, val_batches, n_params, flops_tok, split = _build(
        cfg, accelerator, strategy, plan
    )
    run_folder.check_free_space(cfg, n_params, strategy.state_format)
    if resume is not None:
        _restore(resume, accelerator, strategy, model, optimizer, loader)  # weights that do not fit: refused here
    processes = gather_object([{**describe(accelerator), **strategy.report(model), "cpu_malloc": cpu_malloc}])
    peak = peak_flops_for(processes[0]["device_name"], cfg.train.peak_flops)
    # Gathered once, before step 0, so too little held-out text for analysis.n_tokens fails early.
    analysis_batch = gather_tokens(val_batches, cfg.analysis.n_tokens) if cfg.analysis.every > 0 else None
    # eval.test: the test split is read now, so a missing or too small one fails before training.
    test_batches = (
        build_val_batches(cfg, tokenizer, rank=accelerator.process_index, world_size=world, split="test")
        if cfg.eval.test else None
    )
    check_shared_out_dir(accelerator, cfg.run_dir)  # the first write (multi-process launches only)
    # Every check passed: from here on the run folder is written.
    wandb_id = wandb_run_id(cfg, resume) if main else None  # read before run.json is rewritten
    metrics = MetricsWriter(cfg.run_dir / "metrics.jsonl", enabled=main)
    if main:
        if cfg.train.overwrite and (removed := run_folder.clear_run(cfg.run_dir)):
            print(f"train.overwrite=true: removed {', '.join(removed)} of the earlier run in {cfg.run_dir}",
                  file=sys.stderr, flush=True)
        ckpt.remove_stale(cfg.run_dir)
        save_config(cfg, cfg.run_dir / "config.yaml")
        metrics.truncate_after(start.step)
        write_run_metadata(cfg.run_dir / "run.json", {
            "run_name": cfg.run_name, "world_size": world, "ranks": sorted(p["rank"] for p in processes),
            "processes": processes, "distributed_type": processes[0]["distributed_type"],
            "sharding": processes[0]["sharding"], "sharded_params": processes[0]["sharded_params"],
            "precision": cfg.train.precision, **asdict(plan), "global_batch_size": plan.global_batch_size,
            "global_batch_set_by": batch_source(cfg.train),
            "tokens_per_step": plan.tokens_per_step, "n_params": n_params, "flops_per_token": flops_tok,
            "resumed_from": str(resume) if resume else None, "start_step": start.step, "wandb_id": wandb_id,
            "config_changes": _config_changes(cfg, resume, start.step, changes),
            "optimizer": {"name": cfg.optim.name, "groups": split}, "versions": package_versions(),
        })
    tracker = Tracker(cfg, is_main=main, start_step=start.step, wandb_id=wandb_id)
    tracker.write(summarize_split(split))
    session = Session(
        cfg, accelerator, strategy, plan, tokenizer, model, optimizer, loader, val_batches, test_batches,
        token_bytes(tokenizer), flops_tok, peak,
        resume, start, metrics, tracker, analysis_batch, final_eval,
        SpikeDetector(cfg.monitor.spike_window, cfg.monitor.spike_sigmas)
        if cfg.monitor.every > 0 or cfg.train.skip_spikes else None,
    )
    if resume is not None:
        tracker.write(f"resumed from {resume} at step {start.step}")
        for change in changes:
            tracker.write(f"train.resume_allow_changes: {change['key']} {change['from']} -> {change['to']} "
                          f"from step {start.step} (recorded in run.json)")
    if notice := batch_notice(cfg.train, plan):
        tracker.write(notice)
    if notice := peak_flops_notice(processes[0]["device"], processes[0]["device_name"], peak):
        tracker.write(notice)
    return session


def _all_reduce(accelerator):
    """``reduce(tensor, "sum" | "max")`` over every rank (the identity in one process)."""
    def reduce(tensor: torch.Tensor, op: str) -> torch.Tensor:
        if accelerator.num_processes == 1:
            return tensor
        if op == "sum":
            return accelerator.reduce(tensor, reduction="sum")
        reduced = tensor.clone()
        torch.distributed.all_reduce(reduced, op=torch.distributed.ReduceOp.MAX)
        return reduced
    return reduce


def _eager_if(monitoring: bool):
    """A monitor step's forward runs eagerly under train.compile: the compiled graph would have to be
    traced again with the hooks in it (and without them on the next step), and a traced graph drops
    some of the hooks' side effects. Other steps run the compiled graph, which never saw a hook."""
    return torch.compiler.set_stance("force_eager") if monitoring else contextlib.nullcontext()


def monitor_due(cfg: RunConfig, step: int) -> bool:
    """Whether optimizer step ``step`` (counted from 1) is a monitor step (monitor.every)."""
    return cfg.monitor.every > 0 and step % cfg.monitor.every == 0


def _group_grad_norms(s: Session, model: torch.nn.Module) -> dict[str, float]:
    """``{group: gradient norm}`` of the current gradients (every rank calls it; summed over shards)."""
    tally = Tally()
    grad_sq_sums(model, tally)
    reduce = _all_reduce(s.accelerator) if s.strategy.shards_parameters else no_reduce
    return {key.split("/")[2]: value for key, value in tally.record(reduce, s.accelerator.device).items()}


def _spike_event(s: Session, progress: Progress, rank_losses: list[float], grad_norm: float) -> dict[str, Any] | None:
    """The step's spike event, decided alike on every rank from every rank's loss and the global norm."""
    found = []
    for rank, value in enumerate(rank_losses):
        if (spike := s.spikes.check(f"loss/rank_{rank}", value)) is not None:
            found.append((f"loss (rank {rank})", spike))
    if (spike := s.spikes.check("grad_norm", grad_norm)) is not None:
        found.append(("grad_norm", spike))
    if not found:
        return None
    layers = ""
    if s.strategy.exposes_gradients:  # the gradients are still there: which groups moved most
        layers = ", ".join(moved_most(_group_grad_norms(s, s.strategy.plain_model(s.model)), progress.last_grad_norms))
    kind, first = ", ".join(kind for kind, _ in found), found[0][1]
    return {"spike/kind": kind, "spike/value": first.value, "spike/mean": first.mean, "spike/std": first.std,
            "spike/layers": layers}


def train_step(s: Session, progress: Progress) -> float:
    """One optimizer step over plan.grad_accum micro batches; returns the gradient norm (before clipping).

    One host sync per step: every rank's loss (each rank fills its own slot, so that the spike test
    sees each rank's loss) and the target tokens summed over ranks (float64 counts exactly), with
    the (already global) gradient norm. A non-finite step stops the run or is skipped
    (train.skip_nonfinite); a spike is logged or skipped (train.skip_spikes). On a monitor step
    (monitor.every) the statistics of ibnorm_llm.train.monitor are gathered into progress.extra.
    """
    device, plan, cfg = s.accelerator.device, s.plan, s.cfg
    world, rank = s.accelerator.num_processes, s.accelerator.process_index
    plain = s.strategy.plain_model(s.model)
    monitoring = monitor_due(cfg, progress.step + 1)
    tally = Tally() if monitoring else None
    loss_sum = torch.zeros((), device=device)
    n_targets = torch.zeros((), device=device, dtype=torch.int64)
    hooks = MonitorHooks(plain, tally, cfg.monitor.attention_sequences) if monitoring else contextlib.nullcontext()
    with hooks:
        for micro in range(plan.grad_accum):
            batch = {k: v.to(device, non_blocking=True) for k, v in next(s.loader).items()}
            with s.strategy.micro_step(s.model, last=micro == plan.grad_accum - 1):
                with hooks.recording() if monitoring else contextlib.nullcontext(), _eager_if(monitoring):
                    outputs = s.model(**batch)
                loss = outputs.loss
                objective = loss
                if cfg.optim.z_loss > 0:
                    objective = loss + cfg.optim.z_loss * z_loss(outputs.logits, batch["labels"])
                if monitoring:
                    total, top = output_stats(outputs.logits, batch["labels"])
                    tally.share("monitor/output/z_loss", total)
                    tally.maximum("monitor/output/max_logit", top)
                del outputs
                s.accelerator.backward(objective)
            loss_sum += loss.detach().float()
            n_targets += (batch["labels"] != IGNORE_INDEX).sum()  # padding (data.packing=pad) is not a token
    param_tally = Tally() if monitoring and s.strategy.exposes_gradients else None
    if param_tally is not None:
        grad_sq_sums(plain, param_tally)  # before clipping changes the gradients
    clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
    grad_norm = s.strategy.clip_grad_norm(s.model, clip)
    grad_norm = torch.as_tensor(grad_norm if grad_norm is not None else float("nan"), device=device)
    rank_totals = torch.zeros(world + 1, device=device, dtype=torch.float64)
    rank_totals[rank] = (loss_sum / plan.grad_accum).double()
    rank_totals[world] = n_targets.double()
    global_totals = s.accelerator.reduce(rank_totals, reduction="sum")
    *rank_losses, step_tokens, norm_value = torch.cat([global_totals, grad_norm.double().view(1)]).tolist()
    step_loss = sum(rank_losses) / world
    progress.step += 1
    progress.window_steps += 1
    progress.window_tokens += int(step_tokens)
    progress.tokens += int(step_tokens)
    s.tracker.advance(progress.step)
    if math.isfinite(step_loss) and math.isfinite(norm_value):
        event = _spike_event(s, progress, rank_losses, norm_value) if s.spikes is not None else None
        progress.window_losses.append(step_loss)
        if event is not None:
            skip = cfg.train.skip_spikes
            event["spike/skipped"] = skip
            progress.extra.update(event)
            if skip:
                progress.spike_skipped += 1
            s.tracker.write(f"step {progress.step}: {event['spike/kind']} spike ({event['spike/value']:.4g} against "
                            f"{event['spike/mean']:.4g} +- {event['spike/std']:.3g}); "
                            + (f"skipped ({progress.spike_skipped} so far)" if skip else "applied")
                            + (f"; gradient norms moved most in {event['spike/layers']}" if event["spike/layers"] else ""))
            if skip:
                s.optimizer.zero_grad(set_to_none=True)
                if monitoring:  # the spiking step's statistics, without an update to measure
                    _finish_monitor(s, progress, plain, tally, param_tally, None)
                return norm_value
        before = snapshot(plain) if param_tally is not None else None
        s.optimizer.step()
        s.strategy.after_optimizer_step(s.model)  # e.g. nGPT's matrices back on the unit sphere
        s.optimizer.zero_grad(set_to_none=True)
        if monitoring:
            _finish_monitor(s, progress, plain, tally, param_tally, before)
        return norm_value
    where = _culprit(plain, step_loss)
    if not cfg.train.skip_nonfinite:
        s.tracker.close()
        raise NonFiniteError(
            f"non-finite {where} at step {progress.step}; stopping (last good checkpoint: "
            f"{ckpt.find_latest(cfg.run_dir) or 'none'}). Lower optim.lr, enable optim.grad_clip, "
            "or set train.skip_nonfinite=true to skip such steps."
        )
    s.optimizer.zero_grad(set_to_none=True)
    progress.skipped += 1
    s.tracker.write(f"step {progress.step}: skipped, non-finite {where} ({progress.skipped} skipped so far)")
    return norm_value


def _finish_monitor(s: Session, progress: Progress, plain, tally: Tally, param_tally: Tally | None, before) -> None:
    """The monitor step's record (every rank calls it: the statistics are reduced over the ranks)."""
    reduce = _all_reduce(s.accelerator)
    record = tally.record(reduce, s.accelerator.device)
    if param_tally is not None:
        if before is not None:
            update_stats(plain, before, param_tally)
        shard_reduce = reduce if s.strategy.shards_parameters else no_reduce
        params = param_tally.record(shard_reduce, s.accelerator.device)
        record.update(params)
        progress.last_grad_norms = {key.split("/")[2]: value for key, value in params.items()
                                    if key.endswith("/grad_norm")}
    record.update(gain_stats(norm_modules(plain)))
    progress.extra.update(record)


def periodic_report(s: Session, progress: Progress, lr: float, grad_norm: float) -> None:
    """Metrics every train.log_every steps, with held-out evaluation (train.eval_every and the last
    step) and the IB analysis (analysis.every) when due."""
    tc, step = s.cfg.train, progress.step
    is_last = step == tc.max_steps
    do_eval = is_last or (tc.eval_every > 0 and step % tc.eval_every == 0)
    do_analysis = s.analysis_batch is not None and step % s.cfg.analysis.every == 0
    if not (do_eval or do_analysis or step % tc.log_every == 0 or progress.extra):
        return
    elapsed = time.perf_counter() - progress.window_start
    tokens_per_s = progress.window_tokens / elapsed if elapsed > 0 else 0.0
    positions_per_s = progress.window_steps * s.plan.tokens_per_step / elapsed if elapsed > 0 else 0.0
    progress.train_time += elapsed
    progress.trained_tokens += progress.window_tokens
    losses = progress.window_losses
    world = s.accelerator.num_processes
    record = {
        "step": step, "loss": sum(losses) / len(losses) if losses else float("nan"),
        "lr": lr, "grad_norm": grad_norm, "tokens": progress.tokens, "tokens_per_s": tokens_per_s,
        "mfu": mfu(positions_per_s, s.flops_tok, s.peak_flops, world), "skipped_steps": progress.skipped,
        "world_size": world,
    }
    if s.spikes is not None:
        record["spike_skipped_steps"] = progress.spike_skipped
    record.update(progress.extra)
    progress.extra = {}
    record.update(_learnable_lams(s.strategy.plain_model(s.model)))
    if do_eval:
        held_out = s.val_batches[: tc.eval_batches]  # the first train.eval_batches micro batches of data.val_tokens
        with saturation_watch(s.strategy.plain_model(s.model)) as counts:
            record.update(evaluate_split(s.model, held_out, s.accelerator, s.byte_table, "eval"))
        saturation = saturation_record(counts, lambda t: s.accelerator.reduce(t.to(s.accelerator.device), reduction="sum"))
        record.update(saturation)
        for warning in binarizing_warnings(saturation, step):
            s.tracker.write(warning)
        progress.last_eval = record["eval_loss"]
        if is_last and s.test_batches is not None:
            record.update(evaluate_split(s.model, s.test_batches, s.accelerator, s.byte_table, "test"))
    if do_analysis and (s.accelerator.is_main_process or s.strategy.shards_parameters):
        # Only the main rank logs it; a sharded model's forward needs every rank all the same.
        record.update(layer_report(s.strategy.plain_model(s.model), s.analysis_batch, s.cfg.analysis))
    s.metrics.write(record)
    s.tracker.log(record)
    progress.record = record
    progress.window_losses, progress.window_steps, progress.window_tokens = [], 0, 0
    progress.window_start = time.perf_counter()


def periodic_checkpoint(s: Session, progress: Progress) -> None:
    """step_<N>/ every train.checkpoint_every steps (keeping train.keep_last), final/ at the end."""
    tc, step = s.cfg.train, progress.step
    is_last = step == tc.max_steps
    if not (is_last or (tc.checkpoint_every > 0 and step % tc.checkpoint_every == 0)):
        return
    save_started = time.perf_counter()
    saved = ckpt.save_checkpoint(
        ckpt.checkpoints_root(s.cfg.run_dir) / ("final" if is_last else f"step_{step}"),
        accelerator=s.accelerator, strategy=s.strategy, model=s.model, optimizer=s.optimizer,
        tokenizer=s.tokenizer, cfg=s.cfg, loader=s.loader,
        state=replace(s.start, step=step, tokens=progress.tokens, skipped_steps=progress.skipped,
                      spike_skipped_steps=progress.spike_skipped),
    )
    if s.accelerator.is_main_process and not is_last:
        ckpt.prune(s.cfg.run_dir, tc.keep_last)
    s.tracker.write(f"saved {saved}")
    progress.window_start += time.perf_counter() - save_started  # throughput excludes checkpoint time


def finish(s: Session, progress: Progress) -> TrainResult:
    """The eval.suite leaderboard on final/ (single process, see check_final_eval), then close."""
    if progress.spike_skipped:
        s.tracker.write(f"train.skip_spikes: {progress.spike_skipped} of {progress.step} steps "
                        "skipped for a loss or gradient-norm spike (metrics.jsonl: spike/*)")
    if s.resume is not None and progress.step == s.start.step:
        s.tracker.write(f"{s.resume} is already at train.max_steps={s.cfg.train.max_steps}; nothing to train")
    final = ckpt.checkpoints_root(s.cfg.run_dir) / "final"
    eval_scores: dict[str, float] = {}
    if s.cfg.eval.suite != "none":
        s.model = s.optimizer = None  # the leaderboard loads final/ itself: free the training copy first
        s.accelerator.free_memory()
        eval_scores = s.final_eval(s.cfg.eval, final, default_eval_dir(final, s.cfg.eval.suite), s.accelerator.device.type)
        s.metrics.merge_into(progress.step, eval_scores)
        s.tracker.log({"step": progress.step, **eval_scores})
    s.tracker.close()
    s.metrics.close()
    # Tear the process group down while every rank is still here: left to interpreter exit, its
    # background threads can be destroyed mid-use and abort one rank after a successful run.
    s.accelerator.wait_for_everyone()
    s.accelerator.end_training()
    return TrainResult(
        run_dir=s.cfg.run_dir, final_checkpoint=final, steps=progress.step, tokens=progress.tokens,
        train_loss=progress.record.get("loss"), eval_loss=progress.last_eval,
        tokens_per_s=progress.trained_tokens / progress.train_time if progress.train_time > 0 else None,
        eval_scores=eval_scores, spike_skipped=progress.spike_skipped,
    )


def start_progress(s: Session) -> Progress:
    """The loop's counters where the checkpoint it resumes from left them (zeros on a fresh start)."""
    return Progress(s.start.step, s.start.tokens, s.start.skipped_steps, spike_skipped=s.start.spike_skipped_steps)


def train(cfg: RunConfig, final_eval: FinalEval | None = None) -> TrainResult:
    """Train ``cfg`` to train.max_steps (continuing from train.resume) and save final/; with
    eval.suite set, ``final_eval`` (e.g. ibnorm_llm.evaluation.harness.run_final_eval) runs it on final/."""
    s = setup(cfg, final_eval)
    progress = start_progress(s)
    s.model.train()
    while progress.step < cfg.train.max_steps:
        lr = lr_at(progress.step, cfg.optim, cfg.train.max_steps)
        set_lr(s.optimizer, lr, cfg.optim)
        grad_norm = train_step(s, progress)
        periodic_report(s, progress, lr, grad_norm)
        periodic_checkpoint(s, progress)
    return finish(s, progress)
