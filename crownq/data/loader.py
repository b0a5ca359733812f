"""Training token stream, the per-rank batch loader and the validation token loader.

Determinism: the stream reads the train shards in sorted order and has no randomness, so a given
file list gives the same batches on every run and every machine (the seed does not change the data
order; it only seeds the model).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from crownq.data.shards import read_shard, read_shard_header

__all__ = ["DistributedTokenLoader", "TokenStream", "load_validation_tokens"]


def _sorted_paths(files: Sequence[str | os.PathLike], what: str) -> list[Path]:
    paths = sorted(Path(f) for f in files)
    if not paths:
        raise ValueError(f"{what}: no shard files given (the split is empty)")
    return paths


class TokenStream:
    """Endless stream over the sorted shards: `take(n)` returns the next n tokens, wrapping around."""

    def __init__(self, files: Sequence[str | os.PathLike], vocab_size: int | None = None):
        self.files = _sorted_paths(files, "TokenStream")
        self.vocab_size = vocab_size
        counts = [read_shard_header(path) for path in self.files]  # fail early on a bad file
        if sum(counts) == 0:
            raise ValueError(
                f"TokenStream: the {len(self.files)} shard(s) hold 0 tokens: {self.files[0]} ..."
            )
        self.file_index = 0
        self.position = 0
        self.epoch = 0  # how many times the stream wrapped around (for logs)
        self._tokens: np.ndarray | None = None

    def _current(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = read_shard(self.files[self.file_index], self.vocab_size)
        return self._tokens

    def _advance_file(self) -> None:
        self.file_index += 1
        if self.file_index == len(self.files):
            self.file_index = 0
            self.epoch += 1
        self.position = 0
        self._tokens = None

    def take(self, n: int) -> np.ndarray:
        out = np.empty(n, dtype=np.uint16)
        filled = 0
        while filled < n:
            tokens = self._current()
            available = len(tokens) - self.position
            if available <= 0:
                self._advance_file()
                continue
            step = min(available, n - filled)
            out[filled : filled + step] = tokens[self.position : self.position + step]
            filled += step
            self.position += step
        return out

    def state_dict(self) -> dict[str, int | str]:
        return {
            "file_index": self.file_index,
            "position": self.position,
            "epoch": self.epoch,
            "files": "\n".join(path.name for path in self.files),
        }

    def load_state_dict(self, state: dict) -> None:
        names = "\n".join(path.name for path in self.files)
        if state["files"] != names:
            raise ValueError(
                "TokenStream.load_state_dict: the checkpoint was taken on other shard files: expected "
                f"{state['files'].count(chr(10)) + 1} file(s) starting {state['files'].splitlines()[:2]}, "
                f"found {len(self.files)} starting {[p.name for p in self.files[:2]]}"
            )
        self.file_index = int(state["file_index"])
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])
        self._tokens = None


class DistributedTokenLoader:
    """Hands each rank its disjoint slice of every global batch, one micro-step per call.

    Each global step takes global_batch_tokens + 1 contiguous tokens from the stream and cuts them
    into world_size * grad_accum_steps pieces; (rank r, micro-step m) gets piece m * world_size + r,
    with one token of overlap for the shifted targets. So W ranks x G micro-steps see exactly the
    tokens 1 rank x W*G micro-steps sees, which makes multi-GPU runs comparable with accumulation.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        rank: int,
        world_size: int,
        device: torch.device | str = "cpu",
        vocab_size: int | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"DistributedTokenLoader: rank must lie in [0, {world_size}), got {rank}")
        self.stream = TokenStream(files, vocab_size)
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device)
        self.micro_step = 0
        self._chunk: np.ndarray | None = None
        self._chunk_start: dict | None = None  # stream state before the current chunk (for resume)
        self._shape: tuple[int, int, int] | None = None

    def _check_shape(self, global_batch_tokens: int, seq_len: int, grad_accum_steps: int) -> None:
        pieces = self.world_size * grad_accum_steps
        if seq_len <= 0 or grad_accum_steps <= 0 or global_batch_tokens <= 0:
            raise ValueError(
                f"next_batch: global_batch_tokens ({global_batch_tokens}), seq_len ({seq_len}) and "
                f"grad_accum_steps ({grad_accum_steps}) must all be positive"
            )
        if global_batch_tokens % (pieces * seq_len):
            raise ValueError(
                f"next_batch: global_batch_tokens={global_batch_tokens} must be divisible by "
                f"world_size*grad_accum_steps*seq_len = {self.world_size}*{grad_accum_steps}*{seq_len} "
                f"= {pieces * seq_len}"
            )
        shape = (global_batch_tokens, seq_len, grad_accum_steps)
        if self.micro_step and self._shape != shape:
            raise ValueError(
                f"next_batch: batch shape changed in the middle of a global step: started with "
                f"(global_batch_tokens, seq_len, grad_accum_steps)={self._shape}, now {shape}"
            )
        self._shape = shape

    def next_batch(
        self, global_batch_tokens: int, seq_len: int, grad_accum_steps: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_shape(global_batch_tokens, seq_len, grad_accum_steps)
        if self.micro_step == 0:
            self._chunk_start = self.stream.state_dict()
            self._chunk = self.stream.take(global_batch_tokens + 1)
        assert self._chunk is not None
        piece_tokens = global_batch_tokens // (self.world_size * grad_accum_steps)
        start = (self.micro_step * self.world_size + self.rank) * piece_tokens
        piece = torch.from_numpy(self._chunk[start : start + piece_tokens + 1].astype(np.int64))
        self.micro_step = (self.micro_step + 1) % grad_accum_steps
        x = piece[:-1].view(-1, seq_len)
        y = piece[1:].view(-1, seq_len)
        non_blocking = self.device.type == "cuda"
        if non_blocking:
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)

    def state_dict(self) -> dict[str, int | str]:
        """Plain ints/strings (loads under torch.load(weights_only=True))."""
        # Mid-step, save where the current chunk started so a resume re-reads the same chunk.
        stream_state = self._chunk_start if self.micro_step else self.stream.state_dict()
        assert stream_state is not None
        state: dict[str, int | str] = {f"stream_{k}": v for k, v in stream_state.items()}
        state["micro_step"] = self.micro_step
        state["world_size"] = self.world_size
        if self._shape is not None:
            state["global_batch_tokens"], state["seq_len"], state["grad_accum_steps"] = self._shape
        return state

    def load_state_dict(self, state: dict) -> None:
        if int(state["world_size"]) != self.world_size and int(state["micro_step"]):
            raise ValueError(
                f"load_state_dict: a mid-step checkpoint from world_size {state['world_size']} cannot "
                f"resume on world_size {self.world_size}"
            )
        self.stream.load_state_dict(
            {k[len("stream_") :]: v for k, v in state.items() if k.startswith("stream_")}
        )
        self.micro_step = 0
        self._chunk = None
        self._chunk_start = None
        if int(state["micro_step"]):
            shape = (int(state["global_batch_tokens"]), int(state["seq_len"]), int(state["grad_accum_steps"]))
            self._chunk_start = self.stream.state_dict()
            self._chunk = self.stream.take(shape[0] + 1)
            self._shape = shape
            self.micro_step = int(state["micro_step"])


def load_validation_tokens(
    files: Sequence[str | os.PathLike], seq_len: int, vocab_size: int | None = None
) -> torch.Tensor:
    """All validation tokens in sorted shard order, trimmed to ((N-1)//seq_len)*seq_len + 1."""
    paths = _sorted_paths(files, "load_validation_tokens")
    if seq_len <= 0:
        raise ValueError(f"load_validation_tokens: seq_len must be positive, got {seq_len}")
    parts = [np.asarray(read_shard(path, vocab_size)) for path in paths]
    total = sum(len(part) for part in parts)
    if total < seq_len + 1:
        raise ValueError(
            f"load_validation_tokens: the validation split ({len(paths)} file(s) starting {paths[0]}) holds "
            f"{total} tokens: expected at least seq_len + 1 = {seq_len + 1}"
        )
    usable = ((total - 1) // seq_len) * seq_len + 1
    tokens = np.concatenate(parts)[:usable] if len(parts) > 1 else parts[0][:usable]
    return torch.from_numpy(tokens.astype(np.int64))
