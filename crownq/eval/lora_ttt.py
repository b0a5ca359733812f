"""eval=lora_ttt: per-document batched LoRA test-time training, score-first by chunk (frontier spec 6.3).

Documents (crownq/eval/documents.py) are visited in length-sorted batches. Each batch gets adapters
(crownq/eval/lora.py), one per document; the base model is frozen. For chunk c every document scores
its predictions [chunk*c, min(chunk*(c+1), n-1)) from a window of at most `window` of its own tokens
ending at the chunk's end (rows left-aligned, padded with 0 and masked), so no document ever sees
another's tokens. The chunk's losses are added to the sums first; then the same forward is
backpropagated (per document: mean over its chunk, summed over documents whose chunk is not their
last) and AdamW takes one step. A DocumentGuard checks every step against what was scored.

Reset rules: a new batch zeroes B and keeps A (warm start) with a fresh optimizer; a fresh LoRA (new A)
for a rank's first batch, a batch of another size (the short last one) and after each global-SGD phase.
A fresh A is drawn from seed + the batch's visit index, so with warm_start_a=false the score does not
depend on how batches are split over ranks; with the warm start it does (A carries over between the
batches a rank happens to score), as in the record.

Ranks: the static round-robin split of crownq/eval/documents.py; rounds of one batch per rank, so the
phased variant can act between rounds on what all ranks have scored. The per-rank sums are reduced.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from crownq.data.byte_tables import ByteTables, target_byte_counts
from crownq.distributed import DistEnv
from crownq.eval.documents import BatchPlan, DocumentGuard, Documents, plan_batches, split_documents
from crownq.eval.lora import BatchedLoRA, lora_per_token_loss
from crownq.eval.result import EvalResult
from crownq.eval.scoring import (
    EvalRuntime,
    Stopwatch,
    all_reduce_sums,
    model_device,
    resolve_runtime,
    result_from_sums,
)
from crownq.progress import Progress

# In a submission bundle only when this holds for its configuration (crownq/submit/closure.py).
BUNDLE_WHEN = 'cfg.eval.lora_ttt.enabled'

Trace = list  # ("score" | "train", document, lo, hi[, nats]) events in order, for tests


def check_lora_config(lt: Any) -> None:
    for name in ("batch_docs", "chunk", "window", "rank"):
        if int(getattr(lt, name)) <= 0:
            raise ValueError(f"eval.lora_ttt.{name} must be positive, got {getattr(lt, name)!r}")
    if lt.window < lt.chunk:
        raise ValueError(f"eval.lora_ttt.window={lt.window} must be at least eval.lora_ttt.chunk={lt.chunk}")


class ChunkBatch:
    """Inputs, targets and masks of one chunk for the documents still active in a batch."""

    def __init__(self, tokens: torch.Tensor, docs: Documents, doc_ids: torch.Tensor, chunk: int, c: int,
                 window: int, device: torch.device) -> None:
        preds = docs.predictions[doc_ids]
        self.lo = chunk * c
        self.rows = torch.nonzero(preds > self.lo).flatten()  # documents with predictions left
        self.docs = doc_ids[self.rows]
        preds = preds[self.rows]
        self.end = torch.clamp(preds, max=self.lo + chunk)  # one past the chunk's last prediction
        self.is_last = self.end == preds
        ws = torch.clamp(self.end - window, min=0)  # window start (document token index)
        ctx = int((self.end - ws).max())
        col = torch.arange(ctx)
        valid = col[None, :] < (self.end - ws)[:, None]
        pos = docs.starts[self.docs][:, None] + ws[:, None] + col[None, :]  # stream position of inputs
        pos = torch.where(valid, pos, 0)
        self.inputs = torch.where(valid, tokens[pos], 0).to(device)
        self.targets = torch.where(valid, tokens[pos + 1], 0).to(device)
        self.positions = (pos + 1).to(device)  # stream position of each target (the sidecar's index)
        pred_index = ws[:, None] + col[None, :]  # prediction j of the document at each column
        self.scored = (valid & (pred_index >= self.lo)).to(device)


def score_and_train_batch(model: torch.nn.Module, lora: BatchedLoRA, optimizer: torch.optim.Optimizer,
                          tokens: torch.Tensor, tables: ByteTables, docs: Documents, doc_ids: torch.Tensor,
                          guard: DocumentGuard, lt: Any, runtime: EvalRuntime, sums: torch.Tensor,
                          trace: Trace | None = None) -> int:
    """The chunk loop of one batch; adds to `sums` (float64 [nats, tokens, bytes]); returns AdamW steps."""
    steps = 0
    chunks = -(-int(docs.predictions[doc_ids].max()) // lt.chunk)
    for c in range(chunks):
        cb = ChunkBatch(tokens, docs, doc_ids, lt.chunk, c, lt.window, runtime.device)
        train = not bool(cb.is_last.all()) and lt.lr > 0
        with torch.set_grad_enabled(train), runtime.autocast_context():
            nats = lora_per_token_loss(model, lora, cb.inputs, cb.targets, cb.rows.to(runtime.device))
        scored_nats = score_chunk(nats, cb, tables, sums, guard, trace)
        if train:
            steps += train_chunk(nats, scored_nats, cb, optimizer, guard, trace)
    return steps


def score_chunk(nats: torch.Tensor, cb: ChunkBatch, tables: ByteTables, sums: torch.Tensor,
                guard: DocumentGuard, trace: Trace | None) -> torch.Tensor:
    """Score first: the chunk's losses and bytes go into the sums before anything learns from them."""
    mask = cb.scored
    detached = nats.detach().double().masked_fill(~mask, 0.0)
    nbytes = target_byte_counts(cb.inputs, cb.targets, tables,
                                cb.positions if tables.sidecar is not None else None)
    sums[0] += detached.sum()
    sums[1] += mask.sum()
    sums[2] += nbytes.masked_fill(~mask, 0).sum()
    for i, d in enumerate(cb.docs.tolist()):
        guard.record_scored(d, cb.lo, int(cb.end[i]))
        if trace is not None:
            trace.append(("score", d, cb.lo, int(cb.end[i]), detached[i][mask[i]].float().cpu()))
    return detached


def train_chunk(nats: torch.Tensor, scored: torch.Tensor, cb: ChunkBatch, optimizer: torch.optim.Optimizer,
                guard: DocumentGuard, trace: Trace | None) -> int:
    """Then train: per document the mean over its chunk, summed over documents for which the chunk is not
    the last; one AdamW step. Each document's adapters only see their own document's loss."""
    keep = ~cb.is_last.to(nats.device)
    for i, d in enumerate(cb.docs.tolist()):
        if bool(keep[i]):
            guard.check_trainable(d, cb.lo, int(cb.end[i]))
            if trace is not None:
                trace.append(("train", d, cb.lo, int(cb.end[i])))
    mask = cb.scored & keep[:, None]
    per_doc = nats.float().masked_fill(~mask, 0.0).sum(1) / mask.sum(1).clamp(min=1)
    optimizer.zero_grad(set_to_none=True)
    per_doc.sum().backward()
    optimizer.step()
    return 1


def make_adamw(lora: BatchedLoRA, lt: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(lora.parameters(), lr=lt.lr, betas=(lt.beta1, lt.beta2), eps=lt.eps,
                             weight_decay=lt.weight_decay)


def _generator(lt: Any, visit: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(lt.seed) * 1_000_003 + visit)


def run_document_ttt(model: torch.nn.Module, val_tokens: torch.Tensor, tables: ByteTables, eval_cfg: Any,
                     dist_env: DistEnv, method: str, *, between_rounds: Callable[..., bool] | None = None,
                     copy_model: bool = True, trace: Trace | None = None,
                     extra_details: Callable[[], dict] | None = None) -> EvalResult:
    """Score every validation document with per-document LoRA TTT (see the module docstring).

    `between_rounds(model, plan, docs, guard, visited)` runs on every rank after each round (phased TTT);
    it returns True when it changed the base model. Works on a deep copy unless copy_model=False."""
    lt = eval_cfg.lora_ttt
    check_lora_config(lt)
    runtime = resolve_runtime(model_device(model), eval_cfg.autocast, "off")  # hooks: eager only
    world, rank = dist_env.world_size, dist_env.rank
    was_training = model.training
    with Stopwatch(runtime.device) as total:
        if copy_model:
            model = copy.deepcopy(model)
        tokens = val_tokens.cpu().long()
        docs = split_documents(tokens, model.cfg.bos_id)
        plan = plan_batches(docs, lt.batch_docs)
        guard = DocumentGuard(docs)
        tables = tables.to(runtime.device)
        sums = torch.zeros(3, dtype=torch.float64, device=runtime.device)
        stats = {"score_train_seconds": 0.0, "adamw_steps": 0, "lora_rebuilds": 0}
        requires = [p.requires_grad for p in model.parameters()]
        lora: BatchedLoRA | None = None
        try:
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
            rounds = -(-len(plan) // world)
            shown = Progress(method, total=rounds, unit="rounds", rate_unit="docs", enabled=dist_env.is_main)
            for r in range(rounds):
                visit = r * world + rank
                if visit < len(plan):
                    doc_ids = plan.batches[visit]
                    if lora is None or lora.num_docs != len(doc_ids) or not lt.warm_start_a:
                        lora = BatchedLoRA(model, len(doc_ids), lt.rank, lt.alpha, _generator(lt, visit),
                                           runtime.device)
                        stats["lora_rebuilds"] += 1
                    else:  # warm start: B to zero, A kept
                        lora.zero_b()
                    optimizer = make_adamw(lora, lt)  # fresh state and step count for every batch
                    with Stopwatch(runtime.device) as watch:
                        stats["adamw_steps"] += score_and_train_batch(
                            model, lora, optimizer, tokens, tables, docs, doc_ids, guard, lt, runtime, sums,
                            trace)
                    stats["score_train_seconds"] += watch.seconds
                visited = min((r + 1) * world, len(plan))
                scored_elsewhere = [d for v in range(r * world, visited) if v != visit
                                    for d in plan.batches[v].tolist()]
                guard.mark_scored_elsewhere(scored_elsewhere)
                if between_rounds is not None and between_rounds(model, plan, docs, guard, visited):
                    lora = None  # fresh adapters (new A) and optimizer on the updated base model
                shown.update(1, sum(len(plan.batches[v]) for v in range(r * world, visited)))
            shown.close()
        finally:
            for p, flag in zip(model.parameters(), requires):
                p.requires_grad_(flag)
            model.train(was_training)
        sums = all_reduce_sums(sums, dist_env)
    expected = int(docs.predictions.sum())
    if int(sums[1]) != expected:
        raise RuntimeError(f"{method}: scored {int(sums[1])} targets but the split has {expected}: "
                           "every target must be scored exactly once")
    details = {"documents": len(docs), "batches": len(plan), "batch_docs": lt.batch_docs, "chunk": lt.chunk,
               "window": lt.window, "rank": lt.rank, "alpha": lt.alpha, "lr": lt.lr,
               "weight_decay": lt.weight_decay, "warm_start_a": lt.warm_start_a,
               "split": "static round-robin",
               "world_size": world, "autocast": runtime.autocast, **stats,
               **(extra_details() if extra_details is not None else {})}
    return result_from_sums(sums, total.seconds, method, eval_cfg.budget_seconds, details)


def lora_ttt_eval(model: torch.nn.Module, val_tokens: torch.Tensor, tables: ByteTables, eval_cfg: Any,
                  dist_env: DistEnv, **kwargs: Any) -> EvalResult:
    """eval=lora_ttt: the whole split scored by per-document LoRA TTT, no global SGD."""
    return run_document_ttt(model, val_tokens, tables, eval_cfg, dist_env, "lora_ttt", **kwargs)


__all__ = ["BatchPlan", "lora_ttt_eval", "run_document_ttt", "score_and_train_batch"]
