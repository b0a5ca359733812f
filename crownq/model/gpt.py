"""The record's GPT: embeddings (+ BigramHash, SmearGate), U-Net of blocks with learned skips, shared
value embeddings, tied softcapped head, fp32 cross-entropy."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crownq.config.arch import ArchConfig
from crownq.model.attention_backend import check_backend_available
from crownq.model.block import Block
from crownq.model.layers import BigramHash, QATLinear, SharedValueEmbedding, SmearGate, rms_norm
from crownq.model.validate import as_arch_config, validate_arch


class GPT(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.cfg = cfg
        d, n = cfg.model_dim, cfg.num_layers
        self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        self.bigram = (BigramHash(cfg.bigram_vocab, cfg.bigram_dim, d, cfg.bigram_scale_init)
                       if cfg.bigram_vocab else None)
        self.smear = SmearGate(d) if cfg.smear_gate else None
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(n))
        # U-Net: the first half (encoder) pushes its outputs, the decoder pops them in reverse order.
        self.num_encoder_layers = n // 2
        num_skips = min(self.num_encoder_layers, n - self.num_encoder_layers) if cfg.unet_skips else 0
        self.skip_weights = nn.Parameter(torch.ones(num_skips, d)) if num_skips else None
        head_dim = d // cfg.num_heads
        self.ve_layers = list(cfg.ve_layers)
        if self.ve_layers:
            self.value_embed = SharedValueEmbedding(cfg.vocab_size, cfg.ve_dim, cfg.num_kv_heads * head_dim,
                                                    cfg.ve_scale_init)
            self.ve_layer_scales = nn.ParameterList(nn.Parameter(torch.ones(1)) for _ in self.ve_layers)
        else:
            self.value_embed, self.ve_layer_scales = None, None
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(d, cfg.vocab_size, bias=False)
        self._init_weights()

    # ----------------------------------------------------------------------------------- init
    @torch.no_grad()
    def _init_weights(self) -> None:
        cfg = self.cfg
        if cfg.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, std=cfg.tied_embed_init_std)
        else:
            nn.init.zeros_(self.lm_head.weight)  # untied head starts silent, as the baseline does
        if self.bigram is not None:
            nn.init.zeros_(self.bigram.embed.weight)
        if self.value_embed is not None:
            nn.init.normal_(self.value_embed.embed.weight, std=0.01)
        if not cfg.orthogonal_init:
            for module in self.modules():
                if isinstance(module, QATLinear) and module.zero_init:
                    nn.init.zeros_(module.weight)
            return
        side_projections = {id(m.proj) for m in (self.bigram, self.value_embed) if m is not None}
        # MKL's multi-threaded QR on a busy 2-core CPU was measured 25x slower than single-threaded
        # (1.2 s vs 0.05 s for 1536x512), which made building crownq_11l take ~7 s.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for module in self.modules():
                if not isinstance(module, QATLinear):
                    continue
                if module.zero_init:
                    nn.init.zeros_(module.weight)
                else:
                    nn.init.orthogonal_(module.weight)
                    if id(module) in side_projections:
                        # Side tables written into the residual/value streams start small.
                        module.weight.mul_(1.0 / math.sqrt(2 * cfg.num_layers))
        finally:
            torch.set_num_threads(threads)

    # -------------------------------------------------------------------------------- forward
    def logits(self, input_ids: Tensor) -> Tensor:
        """[B, T] token ids -> [B, T, V] fp32 logits (softcapped when arch.logit_softcap > 0)."""
        x = self.tok_emb(input_ids)
        if self.bigram is not None:
            x = x + self.bigram(input_ids)
        x = rms_norm(x)
        if self.smear is not None:
            x = self.smear(x)
        x0, v0 = x, None
        ve_base = self.value_embed(input_ids) if self.value_embed is not None else None
        skips: list[Tensor] = []
        n_skips = 0 if self.skip_weights is None else self.skip_weights.size(0)
        for i, block in enumerate(self.blocks):
            decoder_idx = i - self.num_encoder_layers
            if 0 <= decoder_idx < n_skips:
                x = x + self.skip_weights[decoder_idx].to(x.dtype) * skips.pop()
            v_embed = None
            if ve_base is not None and i in self.ve_layers:
                v_embed = ve_base * self.ve_layer_scales[self.ve_layers.index(i)].to(ve_base.dtype)
            x, raw_v = block(x, x0, v0, v_embed)
            if i == 0:
                v0 = raw_v
            if i < self.num_encoder_layers and n_skips:
                skips.append(x)
        x = rms_norm(x)
        weight = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(x, weight.to(x.dtype)).float()
        cap = self.cfg.logit_softcap
        return cap * torch.tanh(logits / cap) if cap > 0 else logits

    def per_token_loss(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        """[B, T] cross-entropy in nats (fp32); forward() is exactly its mean."""
        logits = self.logits(input_ids)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1), reduction="none")
        return loss.view_as(target_ids)

    def forward(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        return self.per_token_loss(input_ids, target_ids).mean()

    # ------------------------------------------------------------------- views for other stages
    def quantizable_linears(self) -> list[tuple[str, QATLinear]]:
        """The attention q/k/v/out and MLP fc/proj linears of every block (the int6 layers)."""
        out = []
        for i, block in enumerate(self.blocks):
            for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
                out.append((f"blocks.{i}.attn.{name}", getattr(block.attn, name)))
            for name in ("fc", "proj"):
                out.append((f"blocks.{i}.mlp.{name}", getattr(block.mlp, name)))
        return out

    def export_groups(self) -> dict[str, str]:
        """State-dict name -> attn | mlp | embed | other, for every state-dict entry."""
        groups = {}
        embed_tables = {"tok_emb.weight", "lm_head.weight", "bigram.embed.weight", "value_embed.embed.weight"}
        for name in self.state_dict():
            if name in embed_tables:
                groups[name] = "embed"
            elif name.startswith("blocks.") and ".attn." in name and name.endswith("_proj.weight"):
                groups[name] = "attn"
            elif name.startswith("blocks.") and ".mlp." in name and name.endswith(".weight"):
                groups[name] = "mlp"
            else:
                groups[name] = "other"
        return groups

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """matrix (Muon): every 2-D projection; embed/head (AdamW): tables; scalar: control tensors."""
        embed = [self.tok_emb.weight]
        for side in (self.bigram, self.value_embed):
            if side is not None:
                embed.append(side.embed.weight)
        head = [] if self.lm_head is None else [self.lm_head.weight]
        matrix = [m.weight for m in self.modules() if isinstance(m, QATLinear)]
        taken = {id(p) for p in embed + head + matrix}
        scalar = [p for p in self.parameters() if id(p) not in taken]
        return {"matrix": matrix, "embed": embed, "head": head, "scalar": scalar}

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def build_model(arch_cfg: Any) -> GPT:
    """ArchConfig / `arch` DictConfig / dict -> GPT on CPU in fp32 (the caller moves it)."""
    cfg = as_arch_config(arch_cfg)
    validate_arch(cfg)
    check_backend_available(cfg.attn_backend)
    return GPT(cfg)
