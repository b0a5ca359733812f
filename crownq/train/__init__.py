"""Training: Muon + AdamW, wallclock-aware schedule, late QAT / CROWN-Q, EMA/SWA, checkpoints."""

from crownq.train.loop import train_model
from crownq.train.result import TrainResult
from crownq.train.signals import TrainingPreempted, request_stop

__all__ = ["TrainResult", "TrainingPreempted", "request_stop", "train_model"]
