"""What an evaluation method returns: loss, bpb, the counts behind them, and its wallclock."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The challenge gives evaluation its own 600 s on the submission hardware.
EVAL_BUDGET_SECONDS = 600.0


@dataclass(frozen=True)
class EvalResult:
    val_loss: float  # mean cross-entropy over scored tokens, nats
    val_bpb: float  # bits per byte of the scored tokens
    tokens: int  # tokens scored (every validation target exactly once)
    bytes: int  # UTF-8 bytes those tokens stand for
    seconds: float  # wallclock of this method alone (device synchronised)
    method: str = ""
    budget_seconds: float = EVAL_BUDGET_SECONDS
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def within_budget(self) -> bool:
        return self.seconds <= self.budget_seconds

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (result.json), with the budget check spelled out."""
        out = asdict(self)
        out["within_budget"] = self.within_budget
        return out
