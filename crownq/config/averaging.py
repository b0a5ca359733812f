"""Schema of the `averaging` config group (EMA, SWA and their blend)."""

from dataclasses import dataclass


@dataclass
class AveragingConfig:
    name: str = "swa_ema"
    ema: bool = True
    ema_decay: float = 0.997
    # decay_n = min(ema_decay, (1 + n) / (10 + n)): keeps a few-hundred-step CPU run's EMA off the random
    # init. The record has no warm-up (False). The option files take it from the training preset
    # (`train.ema_warmup`): whether the init must be forgotten quickly is a property of the run length.
    ema_warmup: bool = False
    swa: bool = True
    swa_every: int = 50
    swa_lr_scale_below: float = 0.2  # SWA snapshots once the LR scale falls under this
    ema_weight: float = 0.5  # blend = ema_weight * EMA + (1 - ema_weight) * SWA, when both exist
