"""Progress lines in captured logs, and crownq's logger outside Hydra."""

import logging

import pytest

from crownq import progress as progress_mod
from crownq.progress import Progress


@pytest.fixture
def lines(monkeypatch, caplog):
    monkeypatch.setenv("CROWNQ_PROGRESS", "lines")
    caplog.set_level(logging.INFO, logger="crownq")
    return caplog


def test_captured_progress_is_rate_limited_lines_with_eta(lines, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: now[0])
    with Progress("sliding64", total=4, unit="windows", rate_unit="tokens", every_s=10) as p:
        for t in (1.0, 11.0, 12.0, 25.0):  # the clock when each batch finishes
            now[0] = t
            p.update(1, amount=64)
        now[0] = 30.0
    messages = [r.getMessage() for r in lines.records]
    # t=1 is too soon, t=11 prints, t=12 is too soon again, t=25 prints; the final line always comes.
    assert len(messages) == 3
    assert messages[0] == "sliding64 2/4 windows (50%)  12 tokens/s  ETA 11 s"
    assert messages[1].startswith("sliding64 4/4 windows (100%)")
    assert messages[2] == "sliding64 4/4 windows  9 tokens/s  done in 30 s"


def test_disabled_progress_and_a_failed_stage_print_nothing(lines):
    with Progress("gptq", total=3, enabled=False) as p:
        p.update(3)
    with pytest.raises(RuntimeError), Progress("pruning", total=3) as p:
        raise RuntimeError("boom")
    assert lines.records == []


def test_bad_interval_is_named(monkeypatch):
    monkeypatch.setenv("CROWNQ_PROGRESS_SECONDS", "often")
    with pytest.raises(ValueError, match="CROWNQ_PROGRESS_SECONDS must be a number of seconds, got 'often'"):
        Progress("x")


def test_calibration_reports_progress(lines):
    import torch
    from torch import nn

    from crownq.quant.calibrate import collect_hessians

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def quantizable_linears(self):
            return [("lin", self.lin)]

        def forward(self, x):
            return self.lin(x)

    collect_hessians(Tiny(), [torch.randn(2, 4) for _ in range(3)], total=3)
    assert any(r.getMessage().startswith("calibration 3/3 batches") for r in lines.records)
