"""eval=phased_ttt: per-document LoRA TTT interleaved with global SGD on scored documents (spec 6.4).

Phase k (1..phases) is due once boundary_k = floor(prefix_docs * k / phases) documents are scored. The
check runs after every round of the static split (one batch per rank; after every batch on one rank),
when all ranks have finished their batch. A due phase:
  1. takes every scored document, sorted by (ascending-length batch index, position in batch), keeps the
     first boundary_k (phases are cumulative: phase 2 re-trains phase 1's documents) and concatenates
     their tokens; the DocumentGuard refuses any document not fully scored;
  2. trains every base parameter with SGD (momentum, no weight decay) for one epoch over chunks of
     chunk_tokens targets, one step per chunk, sequences of seq_len split across ranks, gradients summed
     across ranks, global-norm clip, cosine lr over the chunks (no warm-up); the last chunk is skipped;
  3. has the LoRA rebuilt (new A, fresh AdamW) for the batches that follow.
Several boundaries crossed in one round run one phase each, in order.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist

from crownq.data.byte_tables import ByteTables
from crownq.distributed import DistEnv
from crownq.eval.documents import BatchPlan, DocumentGuard, Documents
from crownq.eval.lora_ttt import run_document_ttt
from crownq.eval.result import EvalResult
from crownq.eval.scoring import Stopwatch, model_device, resolve_runtime

# In a submission bundle only when this holds for its configuration (crownq/submit/closure.py).
BUNDLE_WHEN = 'cfg.eval.phased_ttt.enabled'


def phase_boundaries(prefix_docs: int, phases: int) -> list[int]:
    if prefix_docs <= 0 or phases <= 0:
        raise ValueError(f"eval.phased_ttt.prefix_docs and phases must be positive, got {prefix_docs}, "
                         f"{phases}")
    if prefix_docs < phases:  # crownq.config.validate refuses this before training; here for direct callers
        raise ValueError(f"eval.phased_ttt.prefix_docs={prefix_docs} < phases={phases}: the first phase "
                         "would train on no document")
    return [prefix_docs * k // phases for k in range(1, phases + 1)]


def phase_documents(plan: BatchPlan, visited: int, keep: int) -> list[int]:
    """The first `keep` scored documents in (ascending-length batch index, position in batch) order."""
    order = sorted(range(visited), key=lambda v: plan.sorted_index[v])
    docs = [d for v in order for d in plan.batches[v].tolist()]
    return docs[:keep]


def concatenate_documents(tokens: torch.Tensor, docs: Documents,
                          chosen: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(stream, target mask) of the chosen documents' own tokens back to back, plus the last one's final
    target. A junction target (the next document's first token, a BOS) stands for the previous
    document's scored final target when the two tokens are equal (the next document's BOS); it is
    masked out otherwise (the split's last document ends on a plain token)."""
    parts, finals = [], []
    for d in chosen:
        s, n = int(docs.starts[d]), int(docs.lengths[d])
        parts.append(tokens[s:s + n - 1])
        finals.append(int(tokens[s + n - 1]))
    parts.append(torch.tensor(finals[-1:], dtype=tokens.dtype))
    stream = torch.cat(parts)
    mask = torch.ones(stream.numel() - 1, dtype=torch.bool)
    offset = 0
    for k in range(len(chosen) - 1):
        offset += parts[k].numel()
        if int(stream[offset]) != finals[k]:
            mask[offset - 1] = False
    return stream, mask


def global_sgd(model: torch.nn.Module, stream: torch.Tensor, mask: torch.Tensor, pt: Any,
               dist_env: DistEnv, autocast) -> dict[str, float]:
    """One epoch of SGD over `stream` (see the module docstring); returns steps and chunks."""
    device = model_device(model)
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=pt.lr, momentum=pt.momentum, weight_decay=0.0)
    targets_total = stream.numel() - 1
    chunks = -(-targets_total // pt.chunk_tokens)
    world, rank = dist_env.world_size, dist_env.rank
    steps = 0
    model.train()
    try:
        for c in range(chunks - 1):  # the last chunk is skipped
            lr = pt.lr * 0.5 * (1.0 + math.cos(math.pi * c / max(chunks - 1, 1)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            lo, hi = c * pt.chunk_tokens, min((c + 1) * pt.chunk_tokens, targets_total)
            seqs = [(s, min(s + pt.seq_len, hi)) for s in range(lo, hi, pt.seq_len)]
            mine = seqs[rank * len(seqs) // world:(rank + 1) * len(seqs) // world]
            count = int(mask[lo:hi].sum())
            optimizer.zero_grad(set_to_none=True)
            for s, e in mine:  # a sequence at a time: the last one of a chunk may be shorter
                inputs = stream[s:e][None].to(device)
                targets = stream[s + 1:e + 1][None].to(device)
                with autocast():
                    nats = model.per_token_loss(inputs, targets)
                m = mask[s:e][None].to(device)
                (nats.float().masked_fill(~m, 0.0).sum() / max(count, 1)).backward()
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                if world > 1:  # sum of per-rank partial means = the chunk's mean
                    dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            if pt.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, pt.grad_clip_norm)
            optimizer.step()
            steps += 1
    finally:
        model.eval()
        optimizer.zero_grad(set_to_none=True)
    return {"steps": steps, "chunks": chunks}


class PhaseRunner:
    """The between-rounds step of run_document_ttt: runs the phases that are due."""

    def __init__(self, eval_cfg: Any, dist_env: DistEnv, tokens: torch.Tensor) -> None:
        self.pt = eval_cfg.phased_ttt
        self.boundaries = phase_boundaries(self.pt.prefix_docs, self.pt.phases)
        self.dist_env, self.tokens = dist_env, tokens.cpu().long()
        self.done: list[dict] = []
        self.seconds = 0.0
        self.eval_cfg = eval_cfg

    def __call__(self, model: torch.nn.Module, plan: BatchPlan, docs: Documents, guard: DocumentGuard,
                 visited: int) -> bool:
        scored = sum(len(plan.batches[v]) for v in range(visited))
        changed = False
        while len(self.done) < len(self.boundaries) and scored >= self.boundaries[len(self.done)]:
            keep = self.boundaries[len(self.done)]
            chosen = phase_documents(plan, visited, keep)
            guard.check_documents_scored(chosen)  # global SGD learns from whole scored documents only
            stream, mask = concatenate_documents(self.tokens, docs, chosen)
            with Stopwatch(model_device(model)) as watch:
                for p in model.parameters():
                    p.requires_grad_(True)
                try:
                    out = global_sgd(model, stream, mask, self.pt, self.dist_env, self._autocast(model))
                finally:
                    for p in model.parameters():
                        p.requires_grad_(False)
            self.seconds += watch.seconds
            self.done.append({"boundary": keep, "scored_docs": scored, "tokens": stream.numel(),
                              "seconds": round(watch.seconds, 3), **out})
            changed = True
        return changed

    def _autocast(self, model: torch.nn.Module):
        return resolve_runtime(model_device(model), self.eval_cfg.autocast, "off").autocast_context

    def details(self) -> dict:
        return {"phases": self.done, "phases_run": len(self.done), "phase_boundaries": self.boundaries,
                "phase_seconds": self.seconds, "sgd_lr": self.pt.lr}


def phased_ttt_eval(model: torch.nn.Module, val_tokens: torch.Tensor, tables: ByteTables, eval_cfg: Any,
                    dist_env: DistEnv, **kwargs: Any) -> EvalResult:
    """eval=phased_ttt: lora_ttt with the global-SGD phases between rounds. Works on a deep copy."""
    runner = PhaseRunner(eval_cfg, dist_env, val_tokens)
    return run_document_ttt(model, val_tokens, tables, eval_cfg, dist_env, "phased_ttt",
                            between_rounds=runner, extra_details=runner.details, **kwargs)

