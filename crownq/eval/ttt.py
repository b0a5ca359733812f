"""Legal score-first test-time training: score a chunk, then learn from it, chunk by chunk.

The validation targets are cut into chunks along sliding-window boundaries. Each chunk is scored with
the sliding windows of the current weights (split across ranks, reduced); only then does the model take
optimizer steps on that chunk's tokens (gradients averaged across ranks); the last chunk is scored and
never trained on. A ScoreFirstGuard checks every training batch against what has been scored.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.distributed as dist

from crownq.data.byte_tables import ByteTables
from crownq.distributed import DistEnv
from crownq.eval.guard import ScoreFirstGuard
from crownq.eval.result import EvalResult
from crownq.eval.scoring import (
    EvalRuntime,
    Stopwatch,
    all_reduce_sums,
    gather_windows,
    iter_batches,
    loss_function,
    model_device,
    resolve_runtime,
    result_from_sums,
    score_windows,
    scored_mask,
)
from crownq.eval.windows import WindowPlan, group_into_chunks, plan_sliding_windows
from crownq.progress import Progress

# In a submission bundle only when this holds for its configuration (crownq/submit/closure.py).
BUNDLE_WHEN = 'cfg.eval.ttt.enabled'


def training_plan(lo: int, hi: int, seq_len: int) -> WindowPlan:
    """Sequences of `seq_len` whose trained targets tile [lo, hi) once; the last is end-aligned and its
    leading part (targets before the tail, all already scored) serves as context only."""
    if hi < seq_len:
        raise ValueError(f"a training chunk ending at target {hi} cannot hold a sequence of {seq_len}")
    starts = lo + seq_len * torch.arange((hi - lo) // seq_len, dtype=torch.long)
    score_lo = torch.zeros_like(starts)
    covered = int(starts[-1]) + seq_len if len(starts) else lo
    if covered < hi:
        starts = torch.cat([starts, torch.tensor([hi - seq_len])])
        score_lo = torch.cat([score_lo, torch.tensor([seq_len - (hi - covered)])])
    return WindowPlan(starts, score_lo, seq_len)


def make_optimizer(params: list[torch.nn.Parameter], ttt: Any) -> torch.optim.Optimizer:
    if ttt.optimizer == "sgd":
        return torch.optim.SGD(params, lr=ttt.lr, momentum=ttt.momentum, weight_decay=ttt.weight_decay)
    if ttt.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=ttt.lr, weight_decay=ttt.weight_decay)
    raise ValueError(f"eval.ttt.optimizer must be sgd or adamw, got {ttt.optimizer!r}")


def chunk_lr(ttt: Any, chunk: int, trained_chunks: int) -> float:
    if ttt.lr_schedule == "constant":
        return ttt.lr
    if ttt.lr_schedule == "cosine":  # decays towards 0 at the (untrained) last chunk
        return ttt.lr * 0.5 * (1.0 + math.cos(math.pi * chunk / max(trained_chunks, 1)))
    raise ValueError(f"eval.ttt.lr_schedule must be constant or cosine, got {ttt.lr_schedule!r}")


def frozen_parameters(model: torch.nn.Module, frozen_blocks: int) -> list[torch.nn.Parameter]:
    """Parameters of the first `frozen_blocks` transformer blocks (model.blocks)."""
    if not frozen_blocks:
        return []
    blocks = getattr(model, "blocks", None)
    if blocks is None or frozen_blocks > len(blocks):
        have = "no .blocks" if blocks is None else f"{len(blocks)} blocks"
        raise ValueError(f"eval.ttt.frozen_blocks={frozen_blocks} but the model has {have}")
    return [p for block in blocks[:frozen_blocks] for p in block.parameters()]


def train_on_chunk(model: torch.nn.Module, val_tokens: torch.Tensor, plan: WindowPlan, guard: ScoreFirstGuard,
                   optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], ttt: Any,
                   runtime: EvalRuntime, dist_env: DistEnv) -> int:
    """Optimizer steps over `plan` for ttt.epochs; returns the number of steps."""
    model.train()
    steps = 0
    world, rank = dist_env.world_size, dist_env.rank
    for _ in range(ttt.epochs):
        for global_batch in iter_batches(plan, ttt.batch_seqs, pad=False):
            guard.check_trainable(int(global_batch.starts.min()), int(global_batch.scored_hi.max()))
            trained_targets = int((plan.seq_len - global_batch.score_lo).sum())
            mine = global_batch.shard(rank, world)
            optimizer.zero_grad(set_to_none=True)
            if len(mine):
                inputs, targets = gather_windows(val_tokens, mine.starts, plan.seq_len, runtime.device)
                with runtime.autocast_context():
                    nats = model.per_token_loss(inputs, targets)
                mask = scored_mask(mine.score_lo, plan.seq_len, runtime.device)
                (nats.float().masked_fill(~mask, 0.0).sum() / trained_targets).backward()
            if world > 1:  # sum of per-rank partial means = the global batch mean
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            if ttt.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, ttt.grad_clip_norm)
            optimizer.step()
            steps += 1
    model.eval()
    return steps


def _score_then_train(model: torch.nn.Module, val_tokens: torch.Tensor, tables: ByteTables, plan: WindowPlan,
                      chunks: list[tuple[int, int]], guard: ScoreFirstGuard, optimizer: torch.optim.Optimizer,
                      params: list[torch.nn.Parameter], eval_cfg: Any, runtime: EvalRuntime,
                      dist_env: DistEnv) -> tuple[torch.Tensor, dict[str, float]]:
    """The chunk loop: score chunk i on every rank and reduce, record it, then train on it (not the last)."""
    ttt = eval_cfg.ttt
    loss_fn = loss_function(model, runtime)
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=runtime.device)
    stats = {"score_seconds": 0.0, "train_seconds": 0.0, "train_steps": 0}
    shown = Progress("ttt", total=len(chunks), unit="chunks", rate_unit="tokens", enabled=dist_env.is_main)
    for index, (w_lo, w_hi) in enumerate(chunks):
        chunk = plan[w_lo:w_hi]
        with Stopwatch(runtime.device) as watch:
            mine = chunk.shard(dist_env.rank, dist_env.world_size)
            local = score_windows(loss_fn, val_tokens, tables, mine, eval_cfg.batch_seqs, runtime)
            sums += all_reduce_sums(local, dist_env)
        stats["score_seconds"] += watch.seconds
        lo, hi = int(chunk.scored_lo[0]), int(chunk.scored_hi[-1])
        guard.record_scored(lo, hi)
        shown.update(1, hi - lo)
        if index == len(chunks) - 1 or ttt.epochs == 0:
            continue
        for group in optimizer.param_groups:
            group["lr"] = chunk_lr(ttt, index, len(chunks) - 1)
        with Stopwatch(runtime.device) as watch:
            train_plan = training_plan(lo, hi, plan.seq_len)
            stats["train_steps"] += train_on_chunk(model, val_tokens, train_plan, guard, optimizer, params,
                                                   ttt, runtime, dist_env)
        stats["train_seconds"] += watch.seconds
    shown.close()
    return sums, stats


def score_first_ttt(model: torch.nn.Module, val_tokens: torch.Tensor, tables: ByteTables, eval_cfg: Any,
                    dist_env: DistEnv, *, copy_model: bool = True) -> EvalResult:
    """Sliding-window score of the whole split with score-first TTT (eval_cfg.seq_len/stride/batch_seqs,
    eval_cfg.ttt). Works on a deep copy of `model` unless copy_model=False (then the weights change)."""
    ttt = eval_cfg.ttt
    if ttt.epochs < 0 or ttt.batch_seqs <= 0:
        raise ValueError(f"eval.ttt.epochs must be >= 0 and batch_seqs > 0, got {ttt.epochs}, "
                         f"{ttt.batch_seqs}")
    num_targets = val_tokens.numel() - 1
    plan = plan_sliding_windows(num_targets, eval_cfg.seq_len, eval_cfg.stride)
    chunks = group_into_chunks(plan, ttt.chunk_tokens)
    runtime = resolve_runtime(model_device(model), eval_cfg.autocast, eval_cfg.compile)
    guard = ScoreFirstGuard(num_targets)
    was_training = model.training
    with Stopwatch(runtime.device) as total:
        if copy_model:
            model = copy.deepcopy(model)
        frozen = [p for p in frozen_parameters(model, ttt.frozen_blocks) if p.requires_grad]
        frozen_ids = {id(p) for p in frozen}
        params = [p for p in model.parameters() if p.requires_grad and id(p) not in frozen_ids]
        optimizer = make_optimizer(params, ttt)
        for p in frozen:  # no gradients for them at all; restored below (matters when copy_model=False)
            p.requires_grad_(False)
        try:
            device = runtime.device
            sums, stats = _score_then_train(model, val_tokens.to(device), tables.to(device), plan, chunks,
                                            guard, optimizer, params, eval_cfg, runtime, dist_env)
        finally:
            for p in frozen:
                p.requires_grad_(True)
            model.train(was_training)
    details = {"seq_len": eval_cfg.seq_len, "stride": eval_cfg.stride, "windows": len(plan),
               "chunks": len(chunks), "trained_chunks": len(chunks) - 1 if ttt.epochs else 0,
               "trained_upto": guard.trained_upto, **stats, "optimizer": ttt.optimizer, "lr": ttt.lr,
               "epochs": ttt.epochs, "frozen_blocks": ttt.frozen_blocks,
               "autocast": runtime.autocast, "compile": runtime.compile}
    return result_from_sums(sums, total.seconds, "ttt_score_first", eval_cfg.budget_seconds, details)
