"""One transformer block of the record: GQA attention (q/k RMSNorm, per-head q gain, partial RoPE,
value residual, shared value embedding, XSA) and a LeakyReLU(0.5)^2 MLP, with learned residual
scales and a learned mix of the residual stream with the embedding x0."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crownq.config.arch import ArchConfig
from crownq.model.attention_backend import causal_attention
from crownq.model.gates import sparse_head_gate
from crownq.model.layers import PartialRotary, QATLinear, rms_norm
from crownq.model.varlen import DocLayout, doc_attention


def remove_self_value_component(y: Tensor, v: Tensor) -> Tensor:
    """XSA: subtract from each head's output its projection on that head's own normalised value.

    y: [B, T, H, D], v: [B, T, H_kv, D]; query head h belongs to KV head h // (H / H_kv), so the heads
    are viewed as [H_kv, group] and the value broadcasts over the group without being copied.
    """
    b, t, h, d = y.shape
    hkv = v.size(2)
    yg = y.reshape(b, t, hkv, h // hkv, d)
    vn = F.normalize(v, dim=-1).unsqueeze(3)
    yg = yg - (yg * vn).sum(-1, keepdim=True) * vn
    return yg.reshape(b, t, h, d)


class Attention(nn.Module):
    def __init__(self, cfg: ArchConfig, layer_idx: int):
        super().__init__()
        self.num_heads, self.num_kv_heads = cfg.num_heads, cfg.num_kv_heads
        self.head_dim = cfg.model_dim // cfg.num_heads
        kv_dim = self.num_kv_heads * self.head_dim
        self.q_proj = QATLinear(cfg.model_dim, cfg.model_dim)
        self.k_proj = QATLinear(cfg.model_dim, kv_dim)
        self.v_proj = QATLinear(cfg.model_dim, kv_dim)
        self.out_proj = QATLinear(cfg.model_dim, cfg.model_dim, zero_init=True)
        self.qk_norm = cfg.qk_norm
        # Learned per-head temperature: with q/k RMS-normalised, logits' scale is otherwise fixed.
        self.q_gain = (nn.Parameter(torch.full((cfg.num_heads,), float(cfg.qk_gain_init))) if cfg.q_gain
                       else None)
        self.rotary = PartialRotary(cfg.rope_dims or self.head_dim, cfg.rope_base, cfg.rope_ref_len)
        self.use_xsa = layer_idx >= cfg.num_layers - cfg.xsa_last_n
        # Layer 0 is the source of the value residual, so only later layers own mixing weights.
        owns_mix = cfg.value_residual and layer_idx > 0
        self.v_mix = nn.Parameter(torch.tensor(list(cfg.value_residual_init))) if owns_mix else None
        self.backend = cfg.attn_backend
        # Frontier sparse output gate (spec 3.3): one sigmoid per head from the first attn_gate_window
        # channels of the normalised input; zero init halves every head at step 0.
        self.attn_gate_w = None
        if cfg.attn_gate == "sparse":
            init = torch.randn(cfg.num_heads, cfg.attn_gate_window) * cfg.attn_gate_init_std
            self.attn_gate_w = nn.Parameter(init)
        self.attn_gate_scale = cfg.attn_gate_scale

    def forward(self, x: Tensor, v0: Tensor | None, v_embed: Tensor | None,
                layout: DocLayout | None = None) -> tuple[Tensor, Tensor]:
        """Returns (output [B, T, model_dim], this layer's raw values [B, T, H_kv, D] before mixing).
        With a DocLayout, attention stays inside each token's document (VarLen)."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x)
        if v_embed is not None:
            v = v + v_embed.to(v.dtype)
        v = v.view(b, t, self.num_kv_heads, self.head_dim)
        raw_v = v
        if self.v_mix is not None and v0 is not None:
            mix = self.v_mix.to(v.dtype)
            v = mix[0] * v0 + mix[1] * v
        if self.qk_norm:
            q, k = rms_norm(q), rms_norm(k)
        q, k = self.rotary(q), self.rotary(k)
        if self.q_gain is not None:
            q = q * self.q_gain.to(q.dtype)[None, None, :, None]
        y = causal_attention(q, k, v, self.backend) if layout is None else doc_attention(q, k, v, layout)
        if self.use_xsa:
            y = remove_self_value_component(y, v)
        if self.attn_gate_w is not None:
            y = sparse_head_gate(y, x, self.attn_gate_w, self.attn_gate_scale)
        return self.out_proj(y.reshape(b, t, -1)), raw_v


class MLP(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        hidden = int(cfg.mlp_mult * cfg.model_dim)
        self.fc = QATLinear(cfg.model_dim, hidden)
        self.proj = QATLinear(hidden, cfg.model_dim, zero_init=True)
        # LeakyReLU(0.5)^2 keeps a gradient for negative pre-activations where relu^2 has none.
        self.negative_slope = 0.5 if cfg.mlp_activation == "leaky_relu2" else 0.0

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        h = F.leaky_relu(h, self.negative_slope) if self.negative_slope else F.relu(h)
        return self.proj(h.square())


class Block(nn.Module):
    def __init__(self, cfg: ArchConfig, layer_idx: int):
        super().__init__()
        d = cfg.model_dim
        self.attn = Attention(cfg, layer_idx)
        self.mlp = MLP(cfg)
        self.attn_scale = nn.Parameter(torch.ones(d))
        self.mlp_scale = nn.Parameter(torch.ones(d))
        # Row 0 weighs the running residual, row 1 the (normalised) embedding x0.
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(d), torch.zeros(d)))) if cfg.resid_mix else None
        self.norm_scale = 1.0 / math.sqrt(layer_idx + 1) if cfg.ln_scale else 1.0

    def forward(self, x: Tensor, x0: Tensor, v0: Tensor | None, v_embed: Tensor | None,
                layout: DocLayout | None = None) -> tuple[Tensor, Tensor]:
        if self.resid_mix is not None:
            mix = self.resid_mix.to(x.dtype)
            x = mix[0] * x + mix[1] * x0
        attn_out, raw_v = self.attn(rms_norm(x) * self.norm_scale, v0, v_embed, layout)
        x = x + self.attn_scale.to(x.dtype) * attn_out
        x = x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x) * self.norm_scale)
        return x, raw_v
