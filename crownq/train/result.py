"""What training hands to the next stages."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class TrainResult:
    steps: int
    train_seconds: float  # optimizer steps incl. burst, excluding priming, validation and checkpoints
    state_dict: dict[str, Tensor]  # final averaged weights, CPU, floating tensors fp32
    prequant_val_loss: float  # of the averaged weights, before quantisation (NaN without val tokens)
    prequant_val_bpb: float  # NaN without byte tables
    history: list[dict] = field(default_factory=list)  # step, train_loss, lr_scale, train_seconds, val_*
    averaging: str = ""  # which average produced state_dict: swa_ema | ema | swa | none
