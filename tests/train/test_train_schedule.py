"""The LR schedule (step-based and wallclock-aware), the stopping rule and Muon's momentum warm-up."""

from types import SimpleNamespace

import pytest

from crownq.train.optim import muon_momentum_at
from crownq.train.schedule import effective_cap_seconds, lr_scale, should_stop


def tcfg(**kw):
    base = dict(iterations=1000, warmdown_iters=100, max_wallclock_seconds=0.0, burst_steps=0,
                calibration_reserve_seconds=0.0, muon_momentum=0.99, muon_momentum_warmup_start=0.92,
                muon_momentum_warmup_steps=1500)
    base.update(kw)
    return SimpleNamespace(**base)


def test_step_based_warmdown_is_linear_to_zero():
    c = tcfg()
    assert lr_scale(0, 0.0, c) == 1.0
    assert lr_scale(899, 123.0, c) == 1.0  # elapsed time is ignored without a cap
    assert lr_scale(900, 0.0, c) == 1.0
    assert lr_scale(950, 0.0, c) == pytest.approx(0.5)
    assert lr_scale(999, 0.0, c) == pytest.approx(0.01)
    assert lr_scale(1000, 0.0, c) == 0.0
    assert should_stop(1000, 0.0, c) and not should_stop(999, 1e9, c)


def test_wallclock_warmdown_uses_measured_step_time():
    # 100 s cap, 10 warmdown iters; steps take 1 s each -> warmdown is the last 10 s.
    c = tcfg(iterations=10**6, warmdown_iters=10, max_wallclock_seconds=100.0)
    assert lr_scale(0, 0.0, c) == 1.0  # nothing measured yet
    assert lr_scale(50, 50.0, c) == 1.0
    assert lr_scale(90, 90.0, c) == pytest.approx(1.0)
    assert lr_scale(95, 95.0, c) == pytest.approx(0.5)
    assert lr_scale(99, 99.0, c) == pytest.approx(0.1)
    assert lr_scale(100, 100.0, c) == 0.0
    # Slower steps (2 s) stretch the warmdown to the last 20 s of the same cap.
    assert lr_scale(45, 90.0, c) == pytest.approx(0.5)
    assert not should_stop(99, 99.9, c) and should_stop(100, 100.0, c)


def test_reserved_time_moves_the_cap_earlier():
    c = tcfg(iterations=10**6, warmdown_iters=10, max_wallclock_seconds=100.0, burst_steps=5,
             calibration_reserve_seconds=15.0)
    # 1 s/step: 5 burst steps + 15 s calibration -> the main loop's cap is 80 s.
    assert effective_cap_seconds(50, 50.0, c) == pytest.approx(80.0)
    assert lr_scale(75, 75.0, c) == pytest.approx(0.5)
    assert should_stop(80, 80.0, c) and not should_stop(79, 79.0, c)


def test_no_warmdown_means_constant_scale():
    assert lr_scale(999, 0.0, tcfg(warmdown_iters=0)) == 1.0


def test_muon_momentum_warmup():
    c = tcfg()
    assert muon_momentum_at(0, c) == pytest.approx(0.92)
    assert muon_momentum_at(750, c) == pytest.approx(0.955)
    assert muon_momentum_at(1500, c) == pytest.approx(0.99)
    assert muon_momentum_at(5000, c) == pytest.approx(0.99)
