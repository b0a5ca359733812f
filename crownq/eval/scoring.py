"""Batched scoring of a window plan: summed nats, token and byte counts, reduced across ranks.

This is the one hot loop every method shares. Windows are gathered as a [B, L+1] index matrix, the
model gives per-token nats, and the scored mask and byte counts are computed for the whole batch at
once; the sums stay on the device in float64 so there is one host sync per method, not per batch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from crownq.data.byte_tables import ByteTables, bits_per_byte, target_byte_counts
from crownq.distributed import DistEnv
from crownq.eval.result import EVAL_BUDGET_SECONDS, EvalResult
from crownq.eval.windows import WindowPlan
from crownq.progress import Progress

PerTokenLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EvalRuntime:
    """How the forward runs: bf16 autocast and torch.compile are for CUDA; CPU runs plain fp32."""

    device: torch.device
    autocast: bool = False
    compile: bool = False

    def autocast_context(self) -> contextlib.AbstractContextManager:
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)


def _resolve_switch(value: str | bool, on_cuda: bool, field: str) -> bool:
    if isinstance(value, bool):
        return value
    value = str(value).lower()
    if value == "auto":
        return on_cuda
    if value in ("on", "bf16", "true"):
        return True
    if value in ("off", "false"):
        return False
    raise ValueError(f"eval.{field} must be auto, on/bf16 or off, got {value!r}")


def resolve_runtime(device: torch.device, autocast: str | bool = "auto",
                    compile: str | bool = "auto") -> EvalRuntime:
    on_cuda = device.type == "cuda"
    return EvalRuntime(device, _resolve_switch(autocast, on_cuda, "autocast"),
                       _resolve_switch(compile, on_cuda, "compile"))


def loss_function(model: torch.nn.Module, runtime: EvalRuntime) -> PerTokenLoss:
    # Static shapes (the last batch is padded when compiled) so the graph compiles once per length.
    if runtime.compile:
        return torch.compile(model.per_token_loss, dynamic=False)
    return model.per_token_loss


def gather_windows(val_tokens: torch.Tensor, starts: torch.Tensor, seq_len: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), both [B, L] on `device`, for windows starting at `starts`."""
    offsets = torch.arange(seq_len + 1, device=val_tokens.device)
    tokens = val_tokens[starts.to(val_tokens.device)[:, None] + offsets[None, :]]
    tokens = tokens.to(device=device, dtype=torch.long, non_blocking=True)
    return tokens[:, :-1], tokens[:, 1:]


def scored_mask(score_lo: torch.Tensor, seq_len: int, device: torch.device) -> torch.Tensor:
    return torch.arange(seq_len, device=device)[None, :] >= score_lo.to(device)[:, None]


def iter_batches(plan: WindowPlan, batch_seqs: int, pad: bool) -> Iterator[WindowPlan]:
    """Batches of windows; with `pad`, the last batch is filled up with windows that score nothing
    (score_lo = L), so a compiled forward always sees the same shape."""
    if batch_seqs <= 0:
        raise ValueError(f"eval.batch_seqs must be positive, got {batch_seqs}")
    for lo in range(0, len(plan), batch_seqs):
        batch = plan[lo:lo + batch_seqs]
        missing = batch_seqs - len(batch)
        if pad and missing:
            starts = torch.cat([batch.starts, batch.starts[-1:].expand(missing)])
            score_lo = torch.cat([batch.score_lo, torch.full((missing,), plan.seq_len)])
            batch = WindowPlan(starts, score_lo, plan.seq_len)
        yield batch


@torch.no_grad()  # not inference_mode: tensors a model caches while scoring (RoPE tables) must stay
# usable by autograd when score-first TTT trains the same model afterwards
def score_windows(loss_fn: PerTokenLoss, val_tokens: torch.Tensor, tables: ByteTables,
                  plan: WindowPlan, batch_seqs: int, runtime: EvalRuntime,
                  progress: Progress | None = None) -> torch.Tensor:
    """This rank's sums over `plan`: float64 [loss_nats, tokens, bytes] on the runtime device.

    `tables` must already be on the runtime device (ByteTables.to)."""
    sums = torch.zeros(3, dtype=torch.float64, device=runtime.device)
    for batch in iter_batches(plan, batch_seqs, pad=runtime.compile):
        inputs, targets = gather_windows(val_tokens, batch.starts, plan.seq_len, runtime.device)
        with runtime.autocast_context():
            nats = loss_fn(inputs, targets)
        mask = scored_mask(batch.score_lo, plan.seq_len, runtime.device)
        positions = None
        if tables.sidecar is not None:  # target column j of a window at s is stream position s + 1 + j
            columns = torch.arange(1, plan.seq_len + 1, device=runtime.device)
            positions = batch.starts.to(runtime.device)[:, None] + columns[None, :]
        nbytes = target_byte_counts(inputs, targets, tables, positions)
        sums[0] += nats.double().masked_fill(~mask, 0.0).sum()
        sums[1] += mask.sum()
        sums[2] += nbytes.masked_fill(~mask, 0).sum()
        if progress is not None:  # scored tokens from the host-side plan: no device sync per batch
            progress.update(len(batch), int((plan.seq_len - batch.score_lo).clamp(min=0).sum()))
    return sums


def all_reduce_sums(sums: torch.Tensor, dist_env: DistEnv) -> torch.Tensor:
    if dist_env.world_size > 1:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                f"dist_env.world_size={dist_env.world_size} but torch.distributed is not initialised "
                f"(call crownq.distributed.init_distributed first)"
            )
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    return sums


def model_device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def result_from_sums(sums: torch.Tensor, seconds: float, method: str, budget_seconds: float,
                     details: dict | None = None) -> EvalResult:
    loss_nats, tokens, nbytes = sums.tolist()
    if nbytes <= 0:
        raise ValueError(f"{method}: the scored tokens stand for 0 bytes; check the byte tables")
    return EvalResult(val_loss=loss_nats / tokens, val_bpb=bits_per_byte(loss_nats, int(nbytes)),
                      tokens=int(tokens), bytes=int(nbytes), seconds=seconds, method=method,
                      budget_seconds=budget_seconds, details=dict(details or {}))


def evaluate_plan(model: torch.nn.Module, val_tokens: torch.Tensor, tables: ByteTables, plan: WindowPlan,
                  batch_seqs: int, dist_env: DistEnv, method: str, *, autocast: str | bool = "auto",
                  compile: str | bool = "auto", budget_seconds: float = EVAL_BUDGET_SECONDS,
                  details: dict | None = None) -> EvalResult:
    """Score `plan` split across ranks (model in eval mode), reduce, and time the whole thing."""
    runtime = resolve_runtime(model_device(model), autocast, compile)
    was_training = model.training
    model.eval()
    try:
        with Stopwatch(runtime.device) as watch:
            loss_fn = loss_function(model, runtime)
            local = plan.shard(dist_env.rank, dist_env.world_size)
            # One copy of the split on the device (int64: ~0.5 GB for FineWeb's 62M tokens) instead of a
            # host gather and transfer per batch.
            with Progress(method, total=len(local), unit="windows", rate_unit="tokens",
                          enabled=dist_env.is_main) as shown:
                sums = score_windows(loss_fn, val_tokens.to(runtime.device), tables.to(runtime.device),
                                     local, batch_seqs, runtime, shown)
            sums = all_reduce_sums(sums, dist_env)
    finally:
        model.train(was_training)
    return result_from_sums(sums, watch.seconds, method, budget_seconds,
                            {"windows": len(plan), "autocast": runtime.autocast,
                             "compile": runtime.compile, **(details or {})})


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Wallclock of a block, with the device drained at both ends so queued kernels are counted."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._t0
