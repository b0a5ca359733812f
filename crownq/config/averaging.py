"""Schema of the `averaging` config group (EMA, SWA and their blend)."""

from dataclasses import dataclass


@dataclass
class AveragingConfig:
    name: str = "swa_ema"
    ema: bool = True
    ema_decay: float = 0.997
    swa: bool = True
    swa_every: int = 50
    swa_lr_scale_below: float = 0.2  # SWA snapshots once the LR scale falls under this
    ema_weight: float = 0.5  # blend = ema_weight * EMA + (1 - ema_weight) * SWA, when both exist
