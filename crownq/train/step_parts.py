"""Pieces of one training step: gradient all-reduce, late-QAT switching, CROWN-Q term, validation."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from crownq.distributed import DistEnv
from crownq.quant.fake_quant import crownq_penalty, make_fake_quant


def all_reduce_gradients(params: list[nn.Parameter], world_size: int) -> None:
    """Average gradients over ranks with one flat all-reduce per dtype (missing grads count as zero)."""
    if world_size <= 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for p in params:
        by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat.div_(world_size)
        for g, reduced in zip(grads, _unflatten_dense_tensors(flat, grads)):
            g.copy_(reduced)


def qat_modules(model: nn.Module, qcfg: Any) -> list[tuple[str, nn.Module]]:
    """The linears that late QAT and CROWN-Q act on (`quantizer.qat_coverage`; record: all_linears)."""
    if hasattr(model, "qat_linears"):
        return list(model.qat_linears(qcfg.qat_coverage))
    return list(model.quantizable_linears())  # stand-in models of the tests have only this view


def qat_bits_for(model: nn.Module, qcfg: Any) -> dict[str, int]:
    """Per QAT linear: the grid it trains against. Block linears use their export width (attn_bits /
    mlp_bits); the side projections (BigramHash, value embeddings) the attention width, as the record's
    single int6 grid does for every linear."""
    groups = model.export_groups() if hasattr(model, "export_groups") else {}
    bits = {}
    for name, _ in qat_modules(model, qcfg):
        group = groups.get(f"{name}.weight", "attn")
        bits[name] = int(qcfg.mlp_bits if group == "mlp" else qcfg.attn_bits)
    return bits


def qat_phase(lr_scale: float, qcfg: Any, previous: str = "off") -> str:
    """'off', 'ste' (hard rounding, straight-through gradient) or 'soft' (soft-round gradient).

    Late QAT switches on once the LR scale falls under qat_lr_scale_below and then stays on (as in the
    record: a wallclock schedule's scale can wobble upwards by a hair). 'soft' only exists with
    `qat_gradient: soft_round`; the record's gradient is straight-through throughout.
    """
    if not qcfg.qat:
        return "off"
    if previous == "off" and lr_scale >= qcfg.qat_lr_scale_below:
        return "off"
    if qcfg.qat_gradient == "soft_round" and lr_scale < qcfg.soft_round_lr_scale_below:
        return "soft"
    return "ste"


def set_fake_quant(model: nn.Module, phase: str, qcfg: Any, bits: dict[str, int]) -> None:
    from crownq.quant.rounding import scale_floor_value

    temperature = qcfg.soft_round_temperature if phase == "soft" else None
    cache: dict[int, Any] = {}
    for name, module in qat_modules(model, qcfg):
        if phase == "off":
            module.fake_quant = None
            continue
        b = bits[name]
        if b not in cache:
            cache[b] = make_fake_quant(b, temperature, scale_floor_value(qcfg.scale_floor, b))
        module.fake_quant = cache[b]


def crownq_active(lr_scale: float, qcfg: Any, qat_on: bool) -> bool:
    """Whether the CROWN-Q term is added this step (`quantizer.crownq_window`).

    qat (the record): while late QAT is on and the LR scale < 1; warmdown: whenever the LR scale < 1;
    always: every step.
    """
    if qcfg.crownq_lambda <= 0:
        return False
    window = qcfg.crownq_window
    if window == "qat":
        return qat_on and lr_scale < 1.0
    if window == "warmdown":
        return lr_scale < 1.0
    if window == "always":
        return True
    raise ValueError(f"quantizer.crownq_window must be qat, warmdown or always, got {window!r}")


def crownq_term(model: nn.Module, qcfg: Any) -> Tensor:
    weights = [module.weight for _, module in qat_modules(model, qcfg)]
    return qcfg.crownq_lambda * crownq_penalty(weights, qcfg.crownq_divisor)


def autocast_context(device: torch.device, mode: str):
    enabled = mode == "bf16" or (mode == "auto" and device.type == "cuda")
    if mode not in ("auto", "bf16", "off"):
        raise ValueError(f"train.autocast must be auto, bf16 or off, got {mode!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


@torch.no_grad()
def validate(model: nn.Module, val_tokens: Tensor, tables: Any, seq_len: int, batch_seqs: int,
             max_tokens: int, dist_env: DistEnv, autocast_mode: str) -> tuple[float, float]:
    """Mean loss (nats/token) and bits per byte over the validation split (this rank's share of the
    sequences, summed over ranks). bpb is NaN when no byte tables are given."""
    n_seqs = (val_tokens.numel() - 1) // seq_len
    if max_tokens > 0:
        n_seqs = min(n_seqs, max(max_tokens // seq_len, 1))
    if n_seqs <= 0:
        raise ValueError(f"validation split has {val_tokens.numel()} tokens: "
                         f"expected >= seq_len+1 = {seq_len + 1}")
    lo = n_seqs * dist_env.rank // dist_env.world_size
    hi = n_seqs * (dist_env.rank + 1) // dist_env.world_size
    device = dist_env.device
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss nats, tokens, bytes
    was_training = model.training
    model.eval()
    for start in range(lo, hi, batch_seqs):
        end = min(start + batch_seqs, hi)
        chunk = val_tokens[start * seq_len:end * seq_len + 1].to(device=device, dtype=torch.long)
        x, y = chunk[:-1].view(-1, seq_len), chunk[1:].view(-1, seq_len)
        with autocast_context(device, autocast_mode):
            losses = model.per_token_loss(x, y)
        sums[0] += losses.double().sum()
        sums[1] += y.numel()
        if tables is not None:
            from crownq.data.byte_tables import target_byte_counts

            # Stream positions of the targets: byte sidecars (CaseOps data) are indexed by them.
            positions = torch.arange(start * seq_len + 1, end * seq_len + 1, device=device).view(-1, seq_len)
            sums[2] += target_byte_counts(x, y, tables, positions).sum().double()
    model.train(was_training)
    if dist_env.world_size > 1:
        dist.all_reduce(sums)
    loss_sum, tokens, n_bytes = sums.tolist()
    val_loss = loss_sum / tokens
    val_bpb = (loss_sum / math.log(2)) / n_bytes if tables is not None and n_bytes > 0 else float("nan")
    return val_loss, val_bpb


def agree_across_ranks(elapsed: float, stop: bool, dist_env: DistEnv) -> tuple[float, bool]:
    """All ranks must take the same LR scale and stop at the same step: use the slowest rank's clock
    and stop if any rank was signalled."""
    if dist_env.world_size <= 1:
        return elapsed, stop
    t = torch.tensor([elapsed, float(stop)], dtype=torch.float64, device=dist_env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t[0]), bool(t[1] > 0)
