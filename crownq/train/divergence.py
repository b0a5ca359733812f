"""Divergence: a non-finite training loss stops the run at once, naming the step.

Training on after a NaN only burns the rest of the budget and then fails in export with no word of
why; stopping at the first non-finite loss tells the user where it went wrong.
"""

from __future__ import annotations


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the run's status is `diverged`."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(
            f"training diverged: train_loss is {loss} at step {step} (the first non-finite loss); lower the "
            "learning rates (train.matrix_lr, train.scalar_lr, train.tied_embed_lr, ...), raise "
            "train.warmdown_iters or set train.grad_clip_norm, then start afresh in a new folder")
        self.step = step
        self.loss = loss
