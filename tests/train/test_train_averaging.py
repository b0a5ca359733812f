"""EMA, SWA and blend arithmetic against hand-rolled loops."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from crownq.config.averaging import AveragingConfig
from crownq.train.averaging import WeightAverager, ema_decay_at


def acfg(**kw):
    return OmegaConf.merge(OmegaConf.structured(AveragingConfig), kw)


def run(cfg, steps=12, scales=None):
    """Drive the averager over a fixed weight trajectory w_s = s * ones (+ a buffer that must be copied)."""
    model = nn.Linear(3, 2)
    model.register_buffer("counter", torch.tensor([7.0]))
    with torch.no_grad():
        model.weight.fill_(0.0)
        model.bias.fill_(0.0)
    avg = WeightAverager(model, cfg)
    trajectory = []
    for s in range(1, steps + 1):
        with torch.no_grad():
            model.weight.fill_(float(s))
            model.bias.fill_(-float(s))
        scale = scales[s - 1] if scales else 1.0 - s / steps
        avg.update(model, s, scale)
        trajectory.append((s, scale))
    return model, avg, trajectory


def test_ema_every_step_without_warmup():
    model, avg, _ = run(acfg(ema=True, swa=False, ema_decay=0.9, ema_warmup=False))
    expected = 0.0
    for s in range(1, 13):
        expected = 0.9 * expected + 0.1 * s
    out, used = avg.averaged_state_dict(model)
    assert used == "ema"
    torch.testing.assert_close(out["weight"], torch.full((2, 3), expected), rtol=1e-6, atol=0)
    torch.testing.assert_close(out["bias"], torch.full((2,), -expected), rtol=1e-6, atol=0)
    assert torch.equal(out["counter"], torch.tensor([7.0]))


def test_ema_warmup_decay():
    assert ema_decay_at(0, 0.997, True) == pytest.approx(0.1)
    assert ema_decay_at(10, 0.997, True) == pytest.approx(11 / 20)
    assert ema_decay_at(10_000, 0.997, True) == 0.997
    assert ema_decay_at(0, 0.997, False) == 0.997


def test_swa_snapshots_every_k_below_threshold_and_blend():
    scales = [1.0] * 6 + [0.1] * 6  # below 0.2 from step 7; swa_every 2 -> steps 8, 10, 12
    cfg = acfg(ema=True, swa=True, ema_decay=0.5, ema_warmup=False, swa_every=2, swa_lr_scale_below=0.2,
               ema_weight=0.25)
    model, avg, _ = run(cfg, scales=scales)
    assert avg.swa_count == 3
    swa = (8 + 10 + 12) / 3
    ema = 0.0
    for s in range(1, 13):
        ema = 0.5 * ema + 0.5 * s
    out, used = avg.averaged_state_dict(model)
    assert used == "swa_ema"
    torch.testing.assert_close(out["weight"], torch.full((2, 3), 0.25 * ema + 0.75 * swa), rtol=1e-6, atol=0)


def test_swa_only_and_none_and_fallback():
    scales = [1.0] * 6 + [0.1] * 6
    model, avg, _ = run(acfg(ema=False, swa=True, swa_every=3, swa_lr_scale_below=0.2), scales=scales)
    out, used = avg.averaged_state_dict(model)
    assert used == "swa" and avg.swa_count == 2  # steps 9, 12
    torch.testing.assert_close(out["weight"], torch.full((2, 3), 10.5))
    model, avg, _ = run(acfg(ema=False, swa=False))
    out, used = avg.averaged_state_dict(model)
    assert used == "none" and torch.equal(out["weight"], torch.full((2, 3), 12.0))
    # SWA configured but never reached its threshold: the live weights, and the label says so.
    model, avg, _ = run(acfg(ema=False, swa=True, swa_lr_scale_below=0.0))
    out, used = avg.averaged_state_dict(model)
    assert used == "none" and torch.equal(out["weight"], torch.full((2, 3), 12.0))


def test_state_dict_roundtrip_and_mismatch_error():
    cfg = acfg(swa_every=1, swa_lr_scale_below=2.0)
    model, avg, _ = run(cfg)
    fresh = WeightAverager(model, cfg)
    fresh.load_state_dict(avg.state_dict())
    a, _ = avg.averaged_state_dict(model)
    b, _ = fresh.averaged_state_dict(model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="averaging"):
        WeightAverager(model, acfg(swa=False)).load_state_dict(avg.state_dict())
    with pytest.raises(ValueError, match="ema_weight"):
        WeightAverager(model, acfg(ema_weight=1.5))
