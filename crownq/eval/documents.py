"""Documents of the validation stream and the order per-document TTT visits them (frontier spec 6.2).

The stream is split at BOS: document d spans tokens [start_d, start_d + length_d), which runs from its
BOS up to and including the next document's BOS (the last document ends at the end of the stream), so
it has length_d - 1 predictions and every target of the stream belongs to exactly one document. A
stream that does not open with BOS gets a first document from token 0.

Batches: documents sorted by length (ascending, stable) and cut into groups of `batch_docs`; the groups
are then visited longest first. With several ranks the visit order is split statically, round-robin
(batch i goes to rank i % world_size), so every rank knows which documents all ranks have scored after
each round without a shared counter; documented in docs/evaluation.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crownq.eval.guard import ScoreFirstViolation

# In a submission bundle only when this holds for its configuration (crownq/submit/closure.py).
BUNDLE_WHEN = 'cfg.eval.lora_ttt.enabled'


@dataclass(frozen=True)
class Documents:
    starts: torch.Tensor  # LongTensor[D]: stream position of each document's first token
    lengths: torch.Tensor  # LongTensor[D]: tokens, counting the next document's BOS; >= 2

    def __len__(self) -> int:
        return int(self.starts.numel())

    @property
    def predictions(self) -> torch.Tensor:
        return self.lengths - 1


def split_documents(val_tokens: torch.Tensor, bos_id: int) -> Documents:
    """Documents of the stream, split at every BOS (see the module docstring)."""
    if val_tokens.dim() != 1 or val_tokens.numel() < 2:
        raise ValueError(f"split_documents: expected a 1-D stream of at least 2 tokens, got shape "
                         f"{tuple(val_tokens.shape)}")
    n = val_tokens.numel()
    bos = torch.nonzero(val_tokens == bos_id).flatten()
    starts = bos[bos < n - 1]  # a BOS at the very end opens no document: it is the last target
    if not len(starts) or int(starts[0]) != 0:
        starts = torch.cat([torch.zeros(1, dtype=torch.long), starts])
    ends = torch.cat([starts[1:], torch.tensor([n - 1])])  # inclusive: the next document's BOS
    return Documents(starts.long(), (ends - starts + 1).long())


@dataclass(frozen=True)
class BatchPlan:
    """batches[i]: document indices of the i-th batch visited; sorted_index[i]: its position in the
    ascending-length order (the spec's "original batch index", which orders phase training sets)."""

    batches: list[torch.Tensor]
    sorted_index: list[int]

    def __len__(self) -> int:
        return len(self.batches)

    def for_rank(self, rank: int, world_size: int) -> list[int]:
        """Visit positions this rank scores: the static round-robin split."""
        return list(range(rank, len(self.batches), world_size))


def plan_batches(docs: Documents, batch_docs: int) -> BatchPlan:
    if batch_docs <= 0:
        raise ValueError(f"eval.lora_ttt.batch_docs must be positive, got {batch_docs}")
    order = torch.sort(docs.lengths, stable=True).indices
    groups = list(torch.split(order, batch_docs))
    longest = [int(docs.lengths[g].max()) for g in groups]
    # Longest first: the slowest batches start early, so ranks finish close together (the record's rule).
    visit = sorted(range(len(groups)), key=lambda i: (-longest[i], i))
    return BatchPlan([groups[i] for i in visit], visit)


class DocumentGuard:
    """Score-first, per document: each document's predictions are scored in one left-to-right pass,
    a training step may only read predictions already scored, and global SGD only whole scored
    documents. Raises ScoreFirstViolation otherwise."""

    def __init__(self, docs: Documents) -> None:
        self.predictions = docs.predictions.tolist()
        self.scored = [0] * len(docs)  # predictions [0, scored[d]) of document d are scored

    def record_scored(self, doc: int, lo: int, hi: int) -> None:
        if lo != self.scored[doc] or not lo < hi <= self.predictions[doc]:
            raise ScoreFirstViolation(
                f"document {doc}: scoring must be one left-to-right pass: got predictions [{lo}, {hi}) "
                f"after [0, {self.scored[doc]}) of {self.predictions[doc]}")
        self.scored[doc] = hi

    def check_trainable(self, doc: int, lo: int, hi: int) -> None:
        if lo < 0 or hi > self.scored[doc]:
            raise ScoreFirstViolation(
                f"document {doc}: test-time training on predictions [{lo}, {hi}) but only "
                f"[0, {self.scored[doc]}) are scored: a token must be scored before the model learns from it")

    def check_documents_scored(self, docs: list[int]) -> None:
        partial = [d for d in docs if self.scored[d] != self.predictions[d]]
        if partial:
            raise ScoreFirstViolation(
                f"global SGD on {len(partial)} document(s) not fully scored (first: {partial[0]}, "
                f"{self.scored[partial[0]]} of {self.predictions[partial[0]]} predictions)")

    def mark_scored_elsewhere(self, docs: list[int]) -> None:
        """Documents another rank scored (known from the static split once a round is synchronised)."""
        for d in docs:
            self.scored[d] = self.predictions[d]

    def all_scored(self) -> bool:
        return self.scored == self.predictions
