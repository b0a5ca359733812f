"""Causal attention kernels: FlashAttention 3, FlashAttention 2 or PyTorch SDPA, chosen at run time.

All backends take and return [B, T, H, D] tensors (the FlashAttention layout) with k/v carrying
H_kv <= H heads (grouped-query attention: query head h reads KV head h // (H / H_kv)).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

AttnFn = Callable[[Tensor, Tensor, Tensor], Tensor]


@cache
def _flash_module(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # a broken CUDA extension raises more than ImportError; treat it as absent
        return None


def fa3_available() -> bool:
    return _flash_module("flash_attn_interface") is not None and torch.cuda.is_available()


def fa2_available() -> bool:
    return _flash_module("flash_attn") is not None and torch.cuda.is_available()


def check_backend_available(backend: str) -> None:
    """Fails at build time when a kernel is asked for by name but cannot be used here."""
    if backend == "fa3" and not fa3_available():
        raise ValueError("arch.attn_backend='fa3' but FlashAttention 3 (module flash_attn_interface) "
                         "is not importable or no CUDA device is present; use auto or sdpa")
    if backend == "fa2" and not fa2_available():
        raise ValueError("arch.attn_backend='fa2' but FlashAttention 2 (module flash_attn) is not "
                         "importable or no CUDA device is present; use auto or sdpa")


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    # SDPA wants [B, H, T, D]; enable_gqa lets it broadcast KV heads without materialising copies.
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    gqa = q.size(1) != k.size(1)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    return y.transpose(1, 2)


def _half(t: Tensor) -> Tensor:
    # Flash kernels only run in 16-bit; without autocast the projections arrive in fp32.
    return t if t.dtype in (torch.float16, torch.bfloat16) else t.to(torch.bfloat16)


def fa3_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    out = _flash_module("flash_attn_interface").flash_attn_func(_half(q), _half(k), _half(v), causal=True)
    out = out[0] if isinstance(out, tuple) else out  # some FA3 builds also return the log-sum-exp
    return out.to(q.dtype)


def fa2_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    out = _flash_module("flash_attn").flash_attn_func(_half(q), _half(k), _half(v), causal=True)
    return out.to(q.dtype)


_BY_NAME: dict[str, AttnFn] = {"fa3": fa3_attention, "fa2": fa2_attention, "sdpa": sdpa_attention}


def resolve_backend(requested: str, device: torch.device) -> str:
    """The backend name used for tensors on `device` (CPU is always SDPA under `auto`)."""
    if requested != "auto":
        if requested in ("fa3", "fa2") and device.type != "cuda":
            raise RuntimeError(f"arch.attn_backend={requested!r} needs CUDA tensors, got device {device}")
        return requested
    if device.type == "cuda":
        if fa3_available():
            return "fa3"
        if fa2_available():
            return "fa2"
    return "sdpa"


def causal_attention(q: Tensor, k: Tensor, v: Tensor, backend: str = "auto") -> Tensor:
    return _BY_NAME[resolve_backend(backend, q.device)](q, k, v)


def reference_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Plain softmax(QK^T / sqrt(D)) V with a causal mask, in fp32: the yardstick for tests."""
    group = q.size(2) // k.size(2)
    q, k, v = (t.float().transpose(1, 2) for t in (q, k, v))
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / q.size(-1) ** 0.5
    t = q.size(2)
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2)
