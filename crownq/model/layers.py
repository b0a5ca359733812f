"""Small building blocks of the GPT: QAT-ready linear, partial rotary embedding, SmearGate,
BigramHash embedding and the shared value embedding."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rms_norm(x: Tensor) -> Tensor:
    # Weightless RMSNorm: the record carries per-channel gains in the residual scales instead.
    return F.rms_norm(x, (x.size(-1),))


class QATLinear(nn.Linear):
    """nn.Linear whose weight can pass through a fake-quantiser in forward (late QAT).

    `fake_quant` is None (plain linear) or a callable mapping the fp32 weight to its fake-quantised
    version; the training loop sets it. It applies in training mode only, as in the record: validation
    and calibration during training see the plain weights. The weight is cast to the activation dtype
    so the same module runs under bf16 autocast and in plain fp32.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False, zero_init: bool = False):
        super().__init__(in_features, out_features, bias=bias)
        self.fake_quant: Callable[[Tensor], Tensor] | None = None
        self.zero_init = zero_init  # read by the GPT's initialiser (output projections start at 0)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight if self.fake_quant is None or not self.training else self.fake_quant(self.weight)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w.to(x.dtype), bias)


def rope_base_for_length(base: float, rot_dims: int, seq_len: int, ref_len: int) -> float:
    """The record's length-dependent RoPE base: `base` up to `ref_len` tokens, and for a longer sequence
    `base * (seq_len / ref_len) ** (rot_dims / (rot_dims - 2))` (NTK-style scaling, so the slowest
    rotary frequency still spans the sequence). At the record's 2,048 tokens with 16 rotary dims:
    22,081.79. ref_len 0 keeps the base fixed at every length (crownq's earlier behaviour).
    """
    if ref_len <= 0 or seq_len <= ref_len or rot_dims <= 2:
        return base
    return base * (seq_len / ref_len) ** (rot_dims / (rot_dims - 2))


class PartialRotary(nn.Module):
    """RoPE on the first `rot_dims` channels of each head; the rest pass through unrotated.

    The fp32 cos/sin tables are a plain cache, not buffers: they stay out of the state dict (export
    never sees them) and DDP does not broadcast them every step. They are keyed by sequence length,
    because the base itself depends on the length (`rope_base_for_length`): a table built for 2,048
    tokens is not a prefix of the one for 4,096.
    """

    def __init__(self, rot_dims: int, base: float, ref_len: int = 0):
        super().__init__()
        self.rot_dims = rot_dims
        self.base = base
        self.ref_len = ref_len
        self._cache: dict[tuple[int, torch.device], tuple[Tensor, Tensor]] = {}

    def _tables(self, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (seq_len, device)
        if key not in self._cache:
            with torch.inference_mode(False):  # an eval-built cache must stay usable by autograd later
                self._cache[key] = self._build(seq_len, device)
        return self._cache[key]

    def _build(self, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
        base = rope_base_for_length(self.base, self.rot_dims, seq_len, self.ref_len)
        exponents = torch.arange(0, self.rot_dims, 2, dtype=torch.float32, device=device) / self.rot_dims
        inv_freq = 1.0 / (base ** exponents)
        positions = torch.arange(seq_len, dtype=torch.float32, device=device)
        freqs = torch.outer(positions, inv_freq)
        return freqs.cos(), freqs.sin()

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, T, H, D] -> same shape, first rot_dims channels rotated by position."""
        if self.rot_dims == 0:
            return x
        cos, sin = self._tables(x.size(1), x.device)
        cos, sin = cos[None, :, None, :].to(x.dtype), sin[None, :, None, :].to(x.dtype)
        half = self.rot_dims // 2
        x1, x2, rest = x[..., :half], x[..., half:self.rot_dims], x[..., self.rot_dims:]
        rotated = torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)
        return torch.cat((rotated, rest), dim=-1) if rest.size(-1) else rotated


class SmearGate(nn.Module):
    """x_t <- (1 - g) * x_t + g * x_{t-1} with a learned per-channel gate g = sigmoid(w), w init 0."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """keep [B, T, 1] (arch.smear_bos_mask): 0 where the token is BOS, which then stays unmixed."""
        g = torch.sigmoid(self.gate).to(x.dtype)
        prev = F.pad(x[:, :-1], (0, 0, 1, 0))  # position 0 has no predecessor: mixes with zeros
        term = g * (prev - x)
        return x + (term if keep is None else term * keep.to(x.dtype))


def bigram_bucket(tokens: Tensor, buckets: int) -> Tensor:
    """The record's bigram hash: ((36313 * token) XOR (27191 * previous token)) mod (buckets - 1), in int32.

    Position 0 has no previous token and gets the spare last bucket. The multipliers are the record's
    (its checkpoints index the table with them); int32 products stay exact for vocabularies < 59,000.
    """
    t = tokens.to(torch.int32)
    mixed = torch.bitwise_xor(36313 * t[:, 1:], 27191 * t[:, :-1]) % (buckets - 1)
    first = torch.full_like(t[:, :1], buckets - 1)
    return torch.cat((first, mixed), dim=1).long()


class BigramHash(nn.Module):
    """Embedding of hashed token bigrams, projected to the model width and scaled by a learned scalar.

    The table starts at zero (so the model starts as if BigramHash were off) and the projection
    orthogonal, so gradients reach the table from step one.
    """

    def __init__(self, buckets: int, dim: int, model_dim: int, scale_init: float):
        super().__init__()
        self.buckets = buckets
        self.embed = nn.Embedding(buckets, dim)
        self.proj = QATLinear(dim, model_dim) if dim != model_dim else None
        self.scale = nn.Parameter(torch.tensor(float(scale_init)))

    def forward(self, tokens: Tensor) -> Tensor:
        h = self.embed(bigram_bucket(tokens, self.buckets))
        if self.proj is not None:
            h = self.proj(h)
        return h * self.scale.to(h.dtype)


class SharedValueEmbedding(nn.Module):
    """One token -> value-vector table shared by the layers in `ve_layers` (each has its own scale)."""

    def __init__(self, vocab_size: int, dim: int, kv_dim: int, scale_init: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.proj = QATLinear(dim, kv_dim) if dim != kv_dim else None
        self.scale = nn.Parameter(torch.tensor(float(scale_init)))

    def forward(self, tokens: Tensor) -> Tensor:
        h = self.embed(tokens)
        if self.proj is not None:
            h = self.proj(h)
        return h * self.scale.to(h.dtype)
