"""Depth recurrence (frontier spec §3.6): which physical layer runs at each position of the forward.

With looping on, layers loop_start..loop_end (inclusive) run 1 + num_loops times with shared weights:
    [0 .. loop_start-1] + [loop_start .. loop_end] * (num_loops + 1) + [loop_end+1 .. L-1]
The first half of that list (rounded down) is the U-Net encoder, the rest the decoder; skips pair last
in, first out. With looping off (or num_loops 0) the list is simply 0 .. L-1.
"""

from __future__ import annotations

from typing import Any


def layer_sequence(num_layers: int, num_loops: int, loop_start: int, loop_end: int,
                   looping: bool) -> list[int]:
    """Physical layer index of every layer application, in order."""
    if not looping or num_loops <= 0:
        return list(range(num_layers))
    loop = list(range(loop_start, loop_end + 1))
    return list(range(loop_start)) + loop * (num_loops + 1) + list(range(loop_end + 1, num_layers))


def encoder_decoder(cfg: Any, looping: bool) -> tuple[list[int], list[int]]:
    """(encoder layer indices, decoder layer indices) for this arch with looping on or off."""
    seq = layer_sequence(cfg.num_layers, cfg.num_loops, cfg.loop_start, cfg.loop_end, looping)
    half = len(seq) // 2
    return seq[:half], seq[half:]


def num_skip_slots(cfg: Any) -> int:
    """Learned skip slots: enough for the longest schedule the model can run (looping on, if any)."""
    if not cfg.unet_skips:
        return 0
    enc, dec = encoder_decoder(cfg, looping=cfg.num_loops > 0)
    return min(len(enc), len(dec))


def set_looping_for(model: Any, frac: float) -> bool:
    """Switch depth recurrence on once training reaches arch.loop_enable_at (and keep it on); returns
    True on the step it switches. A model without recurrence is left alone."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or getattr(cfg, "num_loops", 0) <= 0:
        return False
    want = frac >= cfg.loop_enable_at
    changed = want != model.looping_active
    model.looping_active = want
    return changed
