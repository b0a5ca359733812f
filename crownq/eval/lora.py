"""Batched per-document LoRA adapters on crownq's GPT, attached with hooks (frontier spec 6.3).

Every row of a batch is one document with its own adapters, so no document's loss reaches another's
parameters. One set per layer application ("slot": a looped layer runs once per slot with the same base
weights but its own adapters), plus one on the LM head:

    Q, K, V: read the normalised attention input n, add to the q/k/v projection outputs (before QK-norm)
    O:       reads n too (not the attention output), adds to the attention output after W_o
    MLP:     reads the normalised MLP input, adds to the MLP output (before mlp_scale)
    head:    reads the final RMSNorm output, adds to the logits before the softcap

delta(x) = (x A^T) B^T * alpha / rank with A ~ U(-1/sqrt(in), 1/sqrt(in)) and B = 0. The base model is
not modified: forward hooks add the deltas only inside `attached(model)`, so the same model trains
without adapters in global SGD (crownq/eval/phased_ttt.py).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crownq.model.fused_ce import eager_softcap_ce
from crownq.model.recurrence import layer_sequence

# In a submission bundle only when this holds for its configuration (crownq/submit/closure.py).
BUNDLE_WHEN = 'cfg.eval.lora_ttt.enabled'

KINDS = ("q", "k", "v", "o", "mlp")


def layer_slots(model: nn.Module) -> list[int]:
    """Physical layer of each layer application in the model's current schedule (looping as it is)."""
    cfg = model.cfg
    return layer_sequence(cfg.num_layers, cfg.num_loops, cfg.loop_start, cfg.loop_end, model.looping_active)


class BatchedLoRA(nn.Module):
    def __init__(self, model: nn.Module, num_docs: int, rank: int, alpha: float,
                 generator: torch.Generator, device: torch.device) -> None:
        super().__init__()
        cfg = model.cfg
        if not hasattr(model, "blocks") or not hasattr(model, "hidden"):
            raise TypeError("LoRA TTT needs crownq's GPT (blocks, hidden()); got "
                            f"{type(model).__name__}")
        d = cfg.model_dim
        kv = cfg.num_kv_heads * (d // cfg.num_heads)
        self.slots = layer_slots(model)
        self.scale = alpha / rank
        out_dims = {"q": d, "k": kv, "v": kv, "o": d, "mlp": d}
        s = len(self.slots)
        self.A = nn.ParameterDict()
        self.B = nn.ParameterDict()
        for kind in KINDS:
            self.A[kind] = nn.Parameter(torch.empty(s, num_docs, rank, d, device=device))
            self.B[kind] = nn.Parameter(torch.zeros(s, num_docs, out_dims[kind], rank, device=device))
        self.A["head"] = nn.Parameter(torch.empty(num_docs, rank, d, device=device))
        self.B["head"] = nn.Parameter(torch.zeros(num_docs, cfg.vocab_size, rank, device=device))
        self.num_docs = num_docs
        self.fresh_a(generator)
        self.rows: Tensor | None = None  # the batch rows of the current forward (None = all)

    @torch.no_grad()
    def fresh_a(self, generator: torch.Generator) -> None:
        """A ~ U(-1/sqrt(in), 1/sqrt(in)) drawn on the CPU (the same numbers on every device)."""
        for a in self.A.values():
            bound = 1.0 / math.sqrt(a.size(-1))
            a.copy_(torch.rand(a.shape, generator=generator).mul_(2 * bound).sub_(bound))

    @torch.no_grad()
    def zero_b(self) -> None:
        for b in self.B.values():
            b.zero_()

    def delta(self, kind: str, slot: int | None, x: Tensor) -> Tensor:
        a, b = self.A[kind], self.B[kind]
        if slot is not None:
            a, b = a[slot], b[slot]
        if self.rows is not None:
            a, b = a[self.rows], b[self.rows]
        if x.size(0) != a.size(0):
            raise ValueError(f"LoRA: a forward of {x.size(0)} rows for {a.size(0)} documents' adapters")
        h = torch.bmm(x, a.transpose(1, 2).to(x.dtype))
        return torch.bmm(h, b.transpose(1, 2).to(x.dtype)) * self.scale


@contextlib.contextmanager
def attached(model: nn.Module, lora: BatchedLoRA, rows: Tensor | None = None) -> Iterator[None]:
    """Hooks that add the adapters' deltas to the model's forward while the block is open."""
    slot_of: dict[tuple[int, int], int] = {}
    seen: dict[int, int] = {}
    for slot, layer in enumerate(lora.slots):
        slot_of[(layer, seen.get(layer, 0))] = slot
        seen[layer] = seen.get(layer, 0) + 1
    calls = {"attn": dict.fromkeys(seen, 0), "mlp": dict.fromkeys(seen, 0)}
    current = {"attn": {}, "mlp": {}}
    handles = []
    lora.rows = rows

    def enter(part: str, layer: int):
        def hook(module, args):  # which application of this layer the call is: its slot
            current[part][layer] = slot_of[(layer, calls[part][layer] % seen[layer])]
            calls[part][layer] += 1
        return hook

    def add(kind: str, part: str, layer: int):
        def hook(module, args, output):
            slot = current[part][layer]
            if kind == "o":  # the attention returns (output, raw values); O reads its input n
                return output[0] + lora.delta(kind, slot, args[0]), output[1]
            return output + lora.delta(kind, slot, args[0])
        return hook

    try:
        for layer in seen:
            block = model.blocks[layer]
            handles.append(block.attn.register_forward_pre_hook(enter("attn", layer)))
            handles.append(block.mlp.register_forward_pre_hook(enter("mlp", layer)))
            for kind, module in (("q", block.attn.q_proj), ("k", block.attn.k_proj), ("v", block.attn.v_proj),
                                 ("o", block.attn), ("mlp", block.mlp)):
                handles.append(module.register_forward_hook(add(kind, "mlp" if kind == "mlp" else "attn",
                                                                layer)))
        yield
    finally:
        for handle in handles:
            handle.remove()
        lora.rows = None


def lora_per_token_loss(model: nn.Module, lora: BatchedLoRA, inputs: Tensor, targets: Tensor,
                        rows: Tensor | None = None) -> Tensor:
    """[N, T] fp32 nats of the model with the adapters of `rows` (eager softcap and CE, as eval does)."""
    with attached(model, lora, rows):  # rows also select the head's adapters
        h = model.hidden(inputs)
        weight = model.tok_emb.weight if model.lm_head is None else model.lm_head.weight
        raw = F.linear(h, weight.to(h.dtype)) + lora.delta("head", None, h)
    nats = eager_softcap_ce(raw.reshape(-1, raw.size(-1)), targets.reshape(-1), model.cfg.logit_softcap)
    return nats.view_as(targets)
