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
from crownq.model.fused_ce import eager_softcap_ce, softcap_cross_entropy
from crownq.model.gates import WindowSmearGate, merge_skip, not_bos
from crownq.model.lanes import combine_lanes, parallel_block
from crownq.model.layers import BigramHash, QATLinear, SharedValueEmbedding, SmearGate, rms_norm
from crownq.model.recurrence import encoder_decoder, num_skip_slots
from crownq.model.validate import as_arch_config, validate_arch
from crownq.model.varlen import doc_layout


class GPT(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.cfg = cfg
        d, n = cfg.model_dim, cfg.num_layers
        self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        self.bigram = (BigramHash(cfg.bigram_vocab, cfg.bigram_dim, d, cfg.bigram_scale_init)
                       if cfg.bigram_vocab else None)
        self.smear = None
        if cfg.smear_gate:
            self.smear = WindowSmearGate(cfg.smear_window) if cfg.smear_window else SmearGate(d)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(n))
        # U-Net: the first half (encoder) pushes its outputs, the decoder pops them in reverse order.
        # With depth recurrence the halves are of the looped layer list (crownq/model/recurrence.py).
        self.num_encoder_layers = n // 2
        num_skips = num_skip_slots(cfg)
        self.skip_weights = nn.Parameter(torch.ones(num_skips, d)) if num_skips else None
        self.skip_gates = nn.Parameter(torch.zeros(num_skips, d)) if num_skips and cfg.skip_gates else None
        # Plain attribute, not a buffer: torch.compile guards on it (one graph per value). A fresh model
        # evaluates with looping on, as the record does after training; the trainer switches it.
        self.looping_active = cfg.num_loops > 0
        if cfg.parallel_start_layer >= 0:  # sized for every layer (the record's accounting)
            self.parallel_post_lambdas = nn.Parameter(torch.ones(n, 2, 2))
            self.parallel_resid_lambdas = nn.Parameter(torch.full((n, 2), 1.1))
        else:
            self.parallel_post_lambdas = self.parallel_resid_lambdas = None
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
        # The record's rule: a matrix with both sides >= orthogonal_min_dim (64) starts orthogonal, and
        # an output-side "proj" (the BigramHash and value-embedding projections; the block output
        # projections are zero) is scaled by 1/sqrt(2 * layers). A smaller matrix keeps its own init:
        # zero for the side projections, PyTorch's default for any other.
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
                elif min(module.weight.shape) >= cfg.orthogonal_min_dim:
                    nn.init.orthogonal_(module.weight)
                    if id(module) in side_projections:
                        module.weight.mul_(1.0 / math.sqrt(2 * cfg.num_layers))
                elif id(module) in side_projections:
                    nn.init.zeros_(module.weight)
        finally:
            torch.set_num_threads(threads)

    # -------------------------------------------------------------------------------- forward
    def hidden(self, input_ids: Tensor) -> Tensor:
        """[B, T] token ids -> [B, T, d] final-normed hidden states (what the tied head reads)."""
        cfg = self.cfg
        keep = not_bos(input_ids, cfg.bos_id) if cfg.smear_bos_mask else None
        x = self.tok_emb(input_ids)
        if self.bigram is not None:
            x = x + self.bigram(input_ids)
        if isinstance(self.smear, WindowSmearGate):  # the frontier's gate acts on the raw embedding
            x = self.smear(x, keep)
        x = rms_norm(x)
        if isinstance(self.smear, SmearGate):
            x = self.smear(x, keep)
        x0, v0 = x, None
        ve_base = self.value_embed(input_ids) if self.value_embed is not None else None
        layout = None
        if cfg.doc_attention:
            layout = doc_layout(input_ids, cfg.bos_id, cfg.doc_max_len, cfg.attn_backend)
        encoder, decoder = encoder_decoder(cfg, self.looping_active)
        n_skips = 0 if self.skip_weights is None else self.skip_weights.size(0)
        skips: list[Tensor] = []
        lanes: tuple[Tensor, Tensor] | None = None
        for pos, i in enumerate(encoder + decoder):
            block = self.blocks[i]
            v_embed = None
            if ve_base is not None and i in self.ve_layers:
                v_embed = ve_base * self.ve_layer_scales[self.ve_layers.index(i)].to(ve_base.dtype)
            j = pos - len(encoder)  # decoder position (negative in the encoder)
            if j >= 0 and 0 <= cfg.parallel_start_layer <= i and lanes is None:
                lanes = (x, x)
            if 0 <= j < n_skips and skips:
                gate = None if self.skip_gates is None else self.skip_gates[j]
                if lanes is None:
                    x = merge_skip(x, skips.pop(), self.skip_weights[j], gate)
                else:  # in parallel layers the skip enters the attention lane only
                    lanes = (merge_skip(lanes[0], skips.pop(), self.skip_weights[j], gate), lanes[1])
            if lanes is None:
                x, raw_v = block(x, x0, v0, v_embed, layout)
            else:
                lane0, lane1, raw_v = parallel_block(block, lanes[0], lanes[1], x0, v0, v_embed,
                                                     self.parallel_resid_lambdas[i],
                                                     self.parallel_post_lambdas[i], layout)
                lanes = (lane0, lane1)
            if pos == 0:
                v0 = raw_v
            if j < 0 and n_skips:
                skips.append(x)
        if lanes is not None:
            x = combine_lanes(lanes[0], lanes[1], cfg.parallel_final_lane)
        return rms_norm(x)

    def _raw_logits(self, input_ids: Tensor) -> Tensor:
        x = self.hidden(input_ids)
        weight = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(x, weight.to(x.dtype))

    def logits(self, input_ids: Tensor) -> Tensor:
        """[B, T] token ids -> [B, T, V] fp32 logits (softcapped when arch.logit_softcap > 0)."""
        logits = self._raw_logits(input_ids).float()
        cap = self.cfg.logit_softcap
        return cap * torch.tanh(logits / cap) if cap > 0 else logits

    def per_token_loss(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        """[B, T] cross-entropy in nats (fp32); forward() is exactly its mean. With arch.fused_ce the
        training-mode loss goes through the fused softcapped CE (same value, less memory)."""
        raw = self._raw_logits(input_ids)
        flat, targets = raw.reshape(-1, raw.size(-1)), target_ids.reshape(-1)
        if self.cfg.fused_ce and self.training:
            loss = softcap_cross_entropy(flat, targets, self.cfg.logit_softcap)
        else:
            loss = eager_softcap_ce(flat, targets, self.cfg.logit_softcap)
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

    def qat_linears(self, coverage: str) -> list[tuple[str, QATLinear]]:
        """The linears late QAT and CROWN-Q act on. `all_linears` (the record): every QATLinear, the
        BigramHash and value-embedding projections included; `blocks`: quantizable_linears() only."""
        if coverage == "blocks":
            return self.quantizable_linears()
        if coverage != "all_linears":
            raise ValueError(f"quantizer.qat_coverage must be all_linears or blocks, got {coverage!r}")
        return [(name, m) for name, m in self.named_modules() if isinstance(m, QATLinear)]

    def embedding_tables(self) -> list[nn.Parameter]:
        tables = [self.tok_emb.weight]
        tables += [side.embed.weight for side in (self.bigram, self.value_embed) if side is not None]
        return tables

    def place(self, device: torch.device | str) -> GPT:
        """Move to `device`; on CUDA with arch.cuda_embedding_dtype=bf16 (the record) the token, bigram
        and value-embedding tables are kept in bf16 while linears and control tensors stay fp32."""
        device = torch.device(device)
        self.to(device)
        if device.type == "cuda" and self.cfg.cuda_embedding_dtype == "bf16":
            with torch.no_grad():
                for table in self.embedding_tables():
                    table.data = table.data.to(torch.bfloat16)
        return self

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
