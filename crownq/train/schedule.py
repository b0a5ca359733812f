"""LR scale and stopping rule as pure functions of (step, elapsed training seconds) and the train config.

Step-based (max_wallclock_seconds == 0): the scale is 1, then falls linearly to 0 over the last
warmdown_iters of `iterations`.
Wallclock-aware (max_wallclock_seconds > 0): the measured mean step time (elapsed / step) turns
warmdown_iters into seconds; the scale falls linearly to 0 over that many seconds before the cap.
Fraction-based (warmdown_frac > 0, the frontier): the scale is a function of the training fraction
(time-based under a cap), falling linearly over the last warmdown_frac to a floor of min_lr.
Time reserved inside the cap (calibration on training data, burst steps) moves the effective cap earlier.
"""

from __future__ import annotations

from typing import Any


def mean_step_seconds(step: int, elapsed_seconds: float) -> float:
    return elapsed_seconds / step if step > 0 else 0.0


def effective_cap_seconds(step: int, elapsed_seconds: float, tcfg: Any) -> float:
    """The wallclock cap minus what must still fit after the main loop (0 = no cap)."""
    if tcfg.max_wallclock_seconds <= 0:
        return 0.0
    burst = tcfg.burst_steps * mean_step_seconds(step, elapsed_seconds)
    return tcfg.max_wallclock_seconds - tcfg.calibration_reserve_seconds - burst


def training_frac(step: int, elapsed_seconds: float, tcfg: Any) -> float:
    """How far training is (0 at the start, 1 at the cap): elapsed / effective cap under a wallclock
    cap (the frontier's elapsed_ms / 599,500 with a 0.5 s reserve), else step / iterations."""
    if tcfg.max_wallclock_seconds > 0:  # not clamped: the last step may end just past the cap (> 1)
        cap = effective_cap_seconds(step, elapsed_seconds, tcfg)
        return elapsed_seconds / cap if cap > 0 else 1.0
    return step / max(tcfg.iterations, 1)


def frac_lr_mul(frac: float, warmdown_frac: float, min_lr: float) -> float:
    """The frontier's schedule (spec 4.4): 1 until 1 - warmdown_frac, then linear to 0, floored at min_lr."""
    if frac < 1.0 - warmdown_frac:
        return 1.0
    return max((1.0 - frac) / warmdown_frac, min_lr)


def lr_scale(step: int, elapsed_seconds: float, tcfg: Any) -> float:
    """Multiplier of every base learning rate for the optimizer step numbered `step` (0-based)."""
    if getattr(tcfg, "warmdown_frac", 0.0) > 0:
        return frac_lr_mul(training_frac(step, elapsed_seconds, tcfg), tcfg.warmdown_frac, tcfg.min_lr)
    if tcfg.warmdown_iters <= 0:
        return 1.0
    if tcfg.max_wallclock_seconds <= 0:
        start = tcfg.iterations - tcfg.warmdown_iters
        if step < start:
            return 1.0
        return max((tcfg.iterations - step) / tcfg.warmdown_iters, 0.0)
    step_s = mean_step_seconds(step, elapsed_seconds)
    if step_s <= 0:  # nothing measured yet
        return 1.0
    remaining = effective_cap_seconds(step, elapsed_seconds, tcfg) - elapsed_seconds
    warmdown_s = tcfg.warmdown_iters * step_s
    return min(max(remaining / warmdown_s, 0.0), 1.0)


def should_stop(step: int, elapsed_seconds: float, tcfg: Any) -> bool:
    """True once `iterations` steps are done or the (effective) wallclock cap is reached."""
    if step >= tcfg.iterations:
        return True
    cap = effective_cap_seconds(step, elapsed_seconds, tcfg)
    return tcfg.max_wallclock_seconds > 0 and elapsed_seconds >= cap
