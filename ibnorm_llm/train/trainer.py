"""The training loop: ``train(cfg)`` runs one config to its final checkpoint.

Order of work: refuse bad settings (precision, eval.*, batch plan, resume target) -> tokenizer,
model, data -> restore a checkpoint if asked -> loop of optimizer steps (micro batches with
gradient accumulation; one host sync per step for the loss, the target-token count, the
gradient norm and the non-finite check) -> periodic metrics, held-out evaluation and
checkpoints -> final/ (with the test split's loss and bits per byte under eval.test) -> the
eval.suite leaderboard on final/, if asked.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object, set_seed

from ibnorm_llm.analysis import gather_tokens, layer_report
from ibnorm_llm.config import ConfigError, RunConfig, save_config
from ibnorm_llm.data import IGNORE_INDEX, build_train_loader, build_val_batches, check_data_config, load_tokenizer
from ibnorm_llm.data.token_bytes import TokenBytes, token_bytes
from ibnorm_llm.models import build_model, count_parameters
from ibnorm_llm.train import checkpoint as ckpt
from ibnorm_llm.train.batching import plan_batches
from ibnorm_llm.train.cpu_memory import reuse_freed_memory
from ibnorm_llm.train.distributed import build_accelerator, describe, is_sharded, prepare
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
from ibnorm_llm.train.optim import build_optimizer, lr_at, set_lr
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


def resolve_resume(cfg: RunConfig) -> Path | None:
    """The checkpoint to continue from: none, the newest complete one (auto), or a path."""
    if cfg.train.resume == "none":
        return None
    if cfg.train.resume == "auto":
        return ckpt.find_latest(cfg.run_dir)
    path = Path(cfg.train.resume)
    ckpt.read_state(path)  # raises a ConfigError naming train.resume if incomplete or missing
    return path


def check_nothing_left(cfg: RunConfig, resume: Path, state: ckpt.TrainerState) -> None:
    """A checkpoint at train.max_steps trains nothing: fine if final/ exists, an error otherwise."""
    final = ckpt.checkpoints_root(cfg.run_dir) / "final"
    if state.step >= cfg.train.max_steps and not ckpt.is_complete(final):
        raise ConfigError(
            f"train.resume={resume}: the checkpoint is at step {state.step}, already at train.max_steps="
            f"{cfg.train.max_steps}, so nothing would be trained and {final} would not be written. "
            f"Raise train.max_steps above {state.step} to continue training."
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
    """Current lambda of every IBNorm with learnable_lam, keyed 'lam/<module name>'."""
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


def _build_and_restore(cfg: RunConfig, accelerator, plan, resume: Path | None, sharded: bool):
    """Tokenizer, model, optimizer and data, prepared by accelerate and restored from ``resume``,
    plus the parameter count and training FLOPs per token.

    The seed is set before the model is built, so a fresh run's initial weights depend on
    train.seed only. Unsharded runs load weights and optimizer state before prepare (DDP
    then broadcasts nothing new); sharded ones through accelerate's load_state after it.
    Each rank then restores its own data position and RNG streams.
    """
    set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(cfg)
    model = build_model(
        cfg.model, len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    check_data_config(cfg, tokenizer, model.config.max_position_embeddings, model.config.vocab_size)
    if resume is not None and not sharded:
        ckpt.load_model_weights(model, resume)
    if cfg.train.precision == "bf16-pure":
        model.to(torch.bfloat16)  # the paper's recipe: no fp32 copy of the weights
    # Counted before prepare: DeepSpeed's engine has a different config and ZeRO-3 empties parameters.
    n_params = count_parameters(model)
    flops_tok = flops_per_token(n_params, model.config.num_hidden_layers, model.config.hidden_size, cfg.data.seq_len)
    if cfg.train.compile:
        model = torch.compile(model)
    optimizer = build_optimizer(model, cfg.optim)
    if resume is not None and not sharded:
        optimizer.load_state_dict(ckpt.load_optimizer_state(resume))
    rank, world = accelerator.process_index, accelerator.num_processes
    loader = build_train_loader(cfg, tokenizer, rank=rank, world_size=world)
    val_batches = build_val_batches(cfg, tokenizer, rank=rank, world_size=world)
    model, optimizer = prepare(accelerator, model, optimizer, plan, cfg.optim.grad_clip)
    if resume is not None:
        if sharded:
            accelerator.load_state(str(ckpt.sharded_state_dir(resume)))
        rank_state = ckpt.load_rank_state(resume, rank)
        loader.load_state_dict(rank_state["data"])
        ckpt.set_rng_state(rank_state["rng"])
    return tokenizer, model, optimizer, loader, val_batches, n_params, flops_tok


def train(cfg: RunConfig, final_eval: FinalEval | None = None) -> TrainResult:
    """Train ``cfg`` to train.max_steps (continuing from train.resume) and save final/; with
    eval.suite set, ``final_eval`` (e.g. ibnorm_llm.evaluation.harness.run_final_eval) runs it on final/."""
    accelerator = build_accelerator(cfg)  # refuses bf16 on CPU before any work
    main = accelerator.is_main_process
    quiet_libraries(main)
    world = accelerator.num_processes
    check_final_eval(cfg.eval, world, final_eval)
    plan = plan_batches(cfg.train, cfg.data.seq_len, world)
    resume = resolve_resume(cfg)
    state = ckpt.TrainerState(0, 0, 0, world, plan.grad_accum, plan.micro_batch_size)
    if resume is not None:
        state = ckpt.read_state(resume)
        ckpt.check_compatible(state, resume, world, plan.grad_accum, plan.micro_batch_size)
        check_nothing_left(cfg, resume, state)
    sharded = is_sharded(accelerator)
    # CPU steps allocate and free the same large blocks every step: keep them instead of faulting
    # their pages in again (about 10 % of a small model's step; see cpu_memory.py).
    cpu_malloc = reuse_freed_memory(accelerator.device.type)

    tokenizer, model, optimizer, loader, val_batches, n_params, flops_tok = _build_and_restore(
        cfg, accelerator, plan, resume, sharded
    )

    byte_table = token_bytes(tokenizer)
    # eval.test: the test split is read now, so a missing or too small one fails before training.
    test_batches = (
        build_val_batches(cfg, tokenizer, rank=accelerator.process_index, world_size=world, split="test")
        if cfg.eval.test else None
    )
    run_dir = cfg.run_dir
    processes = gather_object([{**describe(accelerator), "cpu_malloc": cpu_malloc}])
    metrics = MetricsWriter(run_dir / "metrics.jsonl", enabled=main)
    wandb_id = wandb_run_id(cfg, resume) if main else None  # read before run.json is rewritten
    if main:
        ckpt.remove_stale(run_dir)
        save_config(cfg, run_dir / "config.yaml")
        metrics.truncate_after(state.step)
        write_run_metadata(run_dir / "run.json", {
            "run_name": cfg.run_name, "world_size": world, "ranks": sorted(p["rank"] for p in processes),
            "processes": processes, "distributed_type": processes[0]["distributed_type"],
            "precision": cfg.train.precision, **asdict(plan), "global_batch_size": plan.global_batch_size,
            "tokens_per_step": plan.tokens_per_step, "n_params": n_params, "flops_per_token": flops_tok,
            "resumed_from": str(resume) if resume else None, "start_step": state.step, "wandb_id": wandb_id,
            "versions": package_versions(),
        })
    peak = peak_flops_for(processes[0]["device_name"], cfg.train.peak_flops)
    tracker = Tracker(cfg, is_main=main, start_step=state.step, wandb_id=wandb_id)
    if resume is not None:
        tracker.write(f"resumed from {resume} at step {state.step}")
    if notice := peak_flops_notice(processes[0]["device"], processes[0]["device_name"], peak):
        tracker.write(notice)

    clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
    max_steps, tc = cfg.train.max_steps, cfg.train
    step, tokens, skipped = state.step, state.tokens, state.skipped_steps
    window_losses: list[float] = []
    window_steps, window_tokens, window_start, train_time, trained_tokens = 0, 0, time.perf_counter(), 0.0, 0
    last_eval: float | None = None
    record: dict[str, Any] = {}
    # Gathered once, before step 0, so too little held-out text for analysis.n_tokens fails early.
    analysis_batch = gather_tokens(val_batches, cfg.analysis.n_tokens) if cfg.analysis.every > 0 else None
    model.train()
    while step < max_steps:
        lr = lr_at(step, cfg.optim, max_steps)
        set_lr(optimizer, lr)
        loss_sum = torch.zeros((), device=accelerator.device)
        n_targets = torch.zeros((), device=accelerator.device, dtype=torch.int64)
        for _ in range(plan.grad_accum):
            batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in next(loader).items()}
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
            loss_sum += loss.detach().float()
            n_targets += (batch["labels"] != IGNORE_INDEX).sum()  # padding (data.packing=pad) is not a token
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), clip)
        grad_norm = torch.as_tensor(grad_norm if grad_norm is not None else float("nan"), device=accelerator.device)
        # One host sync per optimizer step: loss and target tokens summed over ranks (float64 counts
        # exactly), and the (already global) grad norm.
        rank_totals = torch.stack([(loss_sum / plan.grad_accum).double(), n_targets.double()])
        global_totals = accelerator.reduce(rank_totals, reduction="sum")
        loss_total, step_tokens, norm_value = torch.cat([global_totals, grad_norm.double().view(1)]).tolist()
        step_loss = loss_total / world
        step, window_steps, window_tokens = step + 1, window_steps + 1, window_tokens + int(step_tokens)
        tokens += int(step_tokens)
        tracker.advance(step)
        if not (math.isfinite(step_loss) and math.isfinite(norm_value)):
            where = _culprit(accelerator.unwrap_model(model, keep_torch_compile=False), step_loss)
            if not tc.skip_nonfinite:
                tracker.close()
                raise NonFiniteError(
                    f"non-finite {where} at step {step}; stopping (last good checkpoint: "
                    f"{ckpt.find_latest(run_dir) or 'none'}). Lower optim.lr, enable optim.grad_clip, "
                    "or set train.skip_nonfinite=true to skip such steps."
                )
            optimizer.zero_grad(set_to_none=True)
            skipped += 1
            tracker.write(f"step {step}: skipped, non-finite {where} ({skipped} skipped so far)")
        else:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            window_losses.append(step_loss)

        is_last = step == max_steps
        do_eval = is_last or (tc.eval_every > 0 and step % tc.eval_every == 0)
        do_analysis = analysis_batch is not None and step % cfg.analysis.every == 0
        if do_eval or do_analysis or step % tc.log_every == 0:
            elapsed = time.perf_counter() - window_start
            tokens_per_s = window_tokens / elapsed if elapsed > 0 else 0.0
            positions_per_s = window_steps * plan.tokens_per_step / elapsed if elapsed > 0 else 0.0
            train_time, trained_tokens = train_time + elapsed, trained_tokens + window_tokens
            record = {
                "step": step, "loss": sum(window_losses) / len(window_losses) if window_losses else float("nan"),
                "lr": lr, "grad_norm": norm_value, "tokens": tokens, "tokens_per_s": tokens_per_s,
                "mfu": mfu(positions_per_s, flops_tok, peak, world), "skipped_steps": skipped, "world_size": world,
            }
            record.update(_learnable_lams(accelerator.unwrap_model(model, keep_torch_compile=False)))
            if do_eval:
                record.update(evaluate_split(model, val_batches, accelerator, byte_table, "eval"))
                last_eval = record["eval_loss"]
                if is_last and test_batches is not None:
                    record.update(evaluate_split(model, test_batches, accelerator, byte_table, "test"))
            if do_analysis and (main or sharded):
                # Only the main rank logs it; a sharded model's forward needs every rank all the same.
                unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
                record.update(layer_report(unwrapped, analysis_batch, cfg.analysis))
            metrics.write(record)
            tracker.log(record)
            window_losses, window_steps, window_tokens = [], 0, 0
            window_start = time.perf_counter()  # throughput excludes evaluation time
        if is_last or (tc.checkpoint_every > 0 and step % tc.checkpoint_every == 0):
            save_started = time.perf_counter()
            name = "final" if is_last else f"step_{step}"
            saved = ckpt.save_checkpoint(
                ckpt.checkpoints_root(run_dir) / name, accelerator=accelerator, model=model, optimizer=optimizer,
                tokenizer=tokenizer, cfg=cfg, loader=loader, sharded=sharded,
                state=replace(state, step=step, tokens=tokens, skipped_steps=skipped),
            )
            if main and not is_last:
                ckpt.prune(run_dir, tc.keep_last)
            tracker.write(f"saved {saved}")
            window_start += time.perf_counter() - save_started  # and checkpoint time

    if resume is not None and step == state.step:
        tracker.write(f"{resume} is already at train.max_steps={max_steps}; nothing to train")
    final = ckpt.checkpoints_root(run_dir) / "final"
    eval_scores: dict[str, float] = {}
    if cfg.eval.suite != "none":  # single process (check_final_eval)
        del model, optimizer  # the leaderboard loads final/ itself: free the training copy first
        accelerator.free_memory()
        eval_scores = final_eval(cfg.eval, final, run_dir / "eval", accelerator.device.type)
        metrics.merge_into(step, eval_scores)
        tracker.log({"step": step, **eval_scores})
    tracker.close()
    metrics.close()
    return TrainResult(
        run_dir=run_dir, final_checkpoint=final, steps=step, tokens=tokens,
        train_loss=record.get("loss"), eval_loss=last_eval,
        tokens_per_s=trained_tokens / train_time if train_time > 0 else None, eval_scores=eval_scores,
    )
