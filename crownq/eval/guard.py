"""The score-first rule of test-time training, enforced as state rather than left to loop order.

Legal TTT may only learn from validation tokens that were already scored, scoring in one left-to-right
pass. The guard records how far scoring has got and refuses any training batch that reaches beyond.
"""

from __future__ import annotations


class ScoreFirstViolation(RuntimeError):
    """Training would see a validation target before it was scored (or scoring went out of order)."""


class ScoreFirstGuard:
    def __init__(self, num_targets: int) -> None:
        self.num_targets = num_targets
        self.scored_upto = 0  # targets [0, scored_upto) have been scored
        self.trained_upto = 0  # highest target index (exclusive) any training batch touched

    def record_scored(self, lo: int, hi: int) -> None:
        """Targets [lo, hi) are now scored; must continue exactly where scoring stopped."""
        if lo != self.scored_upto or not lo < hi <= self.num_targets:
            raise ScoreFirstViolation(
                f"scoring must be one left-to-right pass: got targets [{lo}, {hi}) after "
                f"[0, {self.scored_upto}) of {self.num_targets}"
            )
        self.scored_upto = hi

    def check_trainable(self, lo: int, hi: int) -> None:
        """Raise unless every target in [lo, hi) (and so every input token) is already scored."""
        if lo < 0 or hi > self.scored_upto:
            raise ScoreFirstViolation(
                f"test-time training on targets [{lo}, {hi}) but only [0, {self.scored_upto}) are "
                f"scored: a token must be scored before the model learns from it"
            )
        self.trained_upto = max(self.trained_upto, hi)
