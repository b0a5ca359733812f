"""Calibration text the model writes itself: the legal GPTQ calibration source after the training cap.

The rules rule out reading training batches once the 600 s training budget is spent, and validation
data may never be used for calibration. Sampling from the trained model needs neither: sequences start
at BOS and are continued token by token from the model's own (temperature-scaled) distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

# In a submission bundle only when this holds for its configuration (crownq/submit/closure.py).
BUNDLE_WHEN = 'cfg.quantizer.calibration_source == "self_generated"'


@torch.no_grad()
def generate_calibration_batches(logits_fn: Callable[[Tensor], Tensor], num_batches: int, batch_seqs: int,
                                 seq_len: int, *, temperature: float = 0.8, seed: int = 0, bos_id: int = 1,
                                 device: torch.device | str = "cpu") -> Iterator[Tensor]:
    """Yield `num_batches` LongTensors [batch_seqs, seq_len] sampled from `logits_fn` ([B, T] -> [B, T, V]).

    No KV cache: each new token re-runs the prefix, so cost grows as seq_len^2 — acceptable for the
    few calibration sequences GPTQ needs, and it works with every attention backend unchanged.
    """
    if num_batches <= 0 or batch_seqs <= 0 or seq_len <= 0:
        raise ValueError(f"self-generated calibration needs positive sizes, got num_batches={num_batches}, "
                         f"batch_seqs={batch_seqs}, seq_len={seq_len}")
    if temperature <= 0:
        raise ValueError(f"quantizer.calibration_temperature must be > 0, got {temperature}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for _ in range(num_batches):
        tokens = torch.full((batch_seqs, 1), bos_id, dtype=torch.long, device=device)
        while tokens.shape[1] < seq_len:
            last_logits = logits_fn(tokens)[:, -1, :].float() / temperature
            probs = torch.softmax(last_logits, dim=-1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator).to(tokens.device)
            tokens = torch.cat([tokens, nxt], dim=1)
        yield tokens
