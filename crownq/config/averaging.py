"""Schema of the `averaging` config group (EMA, SWA and their blend)."""

from dataclasses import dataclass


@dataclass
class AveragingConfig:
    name: str = "swa_ema"
    ema: bool = True
    ema_decay: float = 0.997
    # decay_n = min(ema_decay, (1 + n) / (10 + n)): keeps a few-hundred-step CPU run's EMA off the random
    # init; from update ~3000 on it equals ema_decay, so the record (6600 steps) is unaffected (< 1e-4).
    ema_warmup: bool = True
    swa: bool = True
    swa_every: int = 50
    swa_lr_scale_below: float = 0.2  # SWA snapshots once the LR scale falls under this
    ema_weight: float = 0.5  # blend = ema_weight * EMA + (1 - ema_weight) * SWA, when both exist
