"""Small stand-ins for the eval tests: a causal LM with GPT's loss interface and hand-made byte tables."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crownq.data.byte_tables import ByteTables


class CausalBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(F.layer_norm(x, (d,))).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             is_causal=True)
        x = x + self.out(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(F.layer_norm(x, (d,)))


class StandInLM(nn.Module):
    """Token + learned position embedding, causal attention blocks, untied head. With `record=True`
    every per_token_loss call is logged as (grad_enabled, input_ids, target_ids), in call order."""

    def __init__(self, vocab: int, dim: int = 32, layers: int = 2, heads: int = 2, max_len: int = 512,
                 seed: int = 0, record: bool = False) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(CausalBlock(dim, heads) for _ in range(layers))
        self.head = nn.Linear(dim, vocab, bias=False)
        self.record = record
        self.calls: list[tuple[bool, torch.Tensor, torch.Tensor]] = []

    def per_token_loss(self, input_ids: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        if self.record:
            self.calls.append((torch.is_grad_enabled(), input_ids.detach().cpu().clone(),
                               target_ids.detach().cpu().clone()))
        x = self.tok(input_ids) + self.pos(torch.arange(input_ids.size(1), device=input_ids.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(F.layer_norm(x, (x.size(-1),))).float()
        nats = F.cross_entropy(logits.flatten(0, 1), target_ids.flatten(), reduction="none")
        return nats.view_as(target_ids)

    def forward(self, input_ids: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        return self.per_token_loss(input_ids, target_ids).mean()


def hand_made_tables(vocab: int, seed: int = 0, boundary_ids: tuple[int, ...] = (0, 1, 2, 3)) -> ByteTables:
    """Random pieces of 1..4 bytes, about half with a leading space; `boundary_ids` are 0-byte control ids."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randint(1, 5, (vocab,), generator=gen)
    space = torch.rand(vocab, generator=gen) < 0.5
    boundary = torch.zeros(vocab, dtype=torch.bool)
    boundary[list(boundary_ids)] = True
    base[boundary] = 0
    space[boundary] = False
    return ByteTables(base, space, boundary)


def random_stream(length: int, vocab: int, seed: int = 0, bos_every: int = 50) -> torch.Tensor:
    """Random ids with a BOS (id 1, a boundary) every `bos_every` tokens, like documents."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (length,), generator=gen)
    ids[::bos_every] = 1
    return ids


def bytes_by_rule(val_tokens: torch.Tensor, tables: ByteTables, lo: int = 0, hi: int | None = None) -> int:
    """Bytes of targets lo..hi-1 counted token by token from the accounting rule (independent check)."""
    ids = val_tokens.tolist()
    hi = len(ids) - 1 if hi is None else hi
    total = 0
    for t in range(lo, hi):
        prev, target = ids[t], ids[t + 1]
        total += int(tables.base_bytes[target]) + int(bool(tables.has_leading_space[target])
                                                      and not bool(tables.is_boundary[prev]))
    return total
