"""The straightforward sliding-window evaluation, one window at a time: the yardstick that the batched
implementation is tested and benchmarked against. Written independently of windows.py/scoring.py:
it walks the stream by scored end positions and counts bytes token by token from the accounting rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crownq.data.byte_tables import ByteTables, bits_per_byte


@dataclass(frozen=True)
class ReferenceSums:
    loss_nats: float
    tokens: int
    bytes: int

    @property
    def val_loss(self) -> float:
        return self.loss_nats / self.tokens

    @property
    def val_bpb(self) -> float:
        return bits_per_byte(self.loss_nats, self.bytes)


@torch.inference_mode()
def sliding_window_reference(model: torch.nn.Module, val_tokens: torch.Tensor, tables: ByteTables,
                             seq_len: int, stride: int) -> ReferenceSums:
    """Score targets left to right: the first window the first `seq_len`, then each next window the
    next `stride` (fewer at the end) with the `seq_len`-token window that ends at them as context."""
    num_targets = val_tokens.numel() - 1
    if not 0 < stride <= seq_len <= num_targets:
        raise ValueError(f"need 0 < stride ({stride}) <= seq_len ({seq_len}) <= targets ({num_targets})")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    base = tables.base_bytes.tolist()
    space = tables.has_leading_space.tolist()
    boundary = tables.is_boundary.tolist()
    ids = val_tokens.tolist()
    loss_nats, tokens, nbytes = 0.0, 0, 0
    scored_end = 0
    while scored_end < num_targets:
        end = min(scored_end + (seq_len if scored_end == 0 else stride), num_targets)
        start = end - seq_len  # the window covers targets start..end-1 (inputs start..end-1)
        window = val_tokens[start:end + 1].to(device=device, dtype=torch.long)
        nats = model.per_token_loss(window[None, :-1], window[None, 1:])[0]
        first_scored = scored_end - start
        loss_nats += nats[first_scored:].double().sum().item()
        for t in range(scored_end, end):  # target t is token t+1, preceded by token t
            prev, target = ids[t], ids[t + 1]
            nbytes += base[target] + int(space[target] and not boundary[prev])
        tokens += end - scored_end
        scored_end = end
    model.train(was_training)
    return ReferenceSums(loss_nats, tokens, nbytes)
