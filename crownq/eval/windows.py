"""Window planning: which validation targets each fixed-length window scores.

Indices are in *target space*: target t is token t+1 of the validation stream, predicted from tokens
0..t. A window starting at s feeds tokens s..s+L-1 and covers targets s..s+L-1; it scores only the
targets from offset `score_lo` on, the earlier ones being context that another window already scored.
Every window has the same length L, so a batch of windows is one [B, L] forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def check_window_args(seq_len: int, stride: int) -> None:
    if not isinstance(seq_len, int) or seq_len <= 0:
        raise ValueError(f"eval.seq_len must be a positive integer, got {seq_len!r}")
    if not isinstance(stride, int) or not 0 < stride <= seq_len:
        raise ValueError(f"eval.stride must be an integer in 1..seq_len={seq_len}, got {stride!r}")


def check_enough_targets(num_targets: int, seq_len: int) -> None:
    if num_targets < seq_len:
        raise ValueError(
            f"validation split has {num_targets + 1} tokens ({num_targets} targets), fewer than one "
            f"sequence of eval.seq_len={seq_len} plus 1; use a shorter seq_len or a larger split"
        )


@dataclass(frozen=True)
class WindowPlan:
    starts: torch.Tensor  # LongTensor[W]: first target (and first input token) of each window
    score_lo: torch.Tensor  # LongTensor[W]: offset in the window of its first scored target
    seq_len: int

    def __len__(self) -> int:
        return int(self.starts.numel())

    def __getitem__(self, index: slice) -> WindowPlan:
        return WindowPlan(self.starts[index], self.score_lo[index], self.seq_len)

    @property
    def scored_lo(self) -> torch.Tensor:
        """Absolute index of each window's first scored target."""
        return self.starts + self.score_lo

    @property
    def scored_hi(self) -> torch.Tensor:
        """Absolute index one past each window's last scored target (windows score up to their end)."""
        return self.starts + self.seq_len

    def shard(self, rank: int, world_size: int) -> WindowPlan:
        """This rank's contiguous share; shares differ in size by at most one window."""
        n = len(self)
        return self[rank * n // world_size:(rank + 1) * n // world_size]


def plan_sliding_windows(num_targets: int, seq_len: int, stride: int) -> WindowPlan:
    """Windows advanced by `stride`; the first scores all its targets, the others their last `stride`.

    When the last full step leaves r < stride targets unscored, one tail window ending exactly at the
    last target scores those r, so every target is scored once with the most context that fits.
    """
    check_window_args(seq_len, stride)
    check_enough_targets(num_targets, seq_len)
    starts = torch.arange(0, num_targets - seq_len + 1, stride, dtype=torch.long)
    score_lo = torch.full_like(starts, seq_len - stride)
    score_lo[0] = 0
    tail = num_targets - (int(starts[-1]) + seq_len)
    if tail > 0:
        starts = torch.cat([starts, torch.tensor([num_targets - seq_len])])
        score_lo = torch.cat([score_lo, torch.tensor([seq_len - tail])])
    return WindowPlan(starts, score_lo, seq_len)


def plan_fixed_sequences(num_targets: int, seq_len: int) -> WindowPlan:
    """Disjoint sequences that each score all their targets (the roundtrip evaluation)."""
    check_window_args(seq_len, seq_len)
    check_enough_targets(num_targets, seq_len)
    if num_targets % seq_len:
        raise ValueError(
            f"roundtrip evaluation needs the validation split trimmed to whole sequences: "
            f"{num_targets + 1} tokens is not a multiple of eval.seq_len={seq_len} plus 1 "
            f"(load_validation_tokens trims it)"
        )
    starts = torch.arange(0, num_targets, seq_len, dtype=torch.long)
    return WindowPlan(starts, torch.zeros_like(starts), seq_len)


def group_into_chunks(plan: WindowPlan, chunk_tokens: int) -> list[tuple[int, int]]:
    """Consecutive window ranges [w_lo, w_hi) whose scored targets start in the same chunk of
    `chunk_tokens` targets. A window is never split, so a chunk ends where its last window ends."""
    if chunk_tokens <= 0:
        raise ValueError(f"eval.ttt.chunk_tokens must be positive, got {chunk_tokens}")
    chunk_of_window = torch.div(plan.scored_lo, chunk_tokens, rounding_mode="floor")
    _, counts = torch.unique_consecutive(chunk_of_window, return_counts=True)
    ends = torch.cumsum(counts, 0).tolist()
    return list(zip([0] + ends[:-1], ends))
