"""Weight averaging: EMA every step, SWA snapshots late in warmdown, and their blend.

Averages are kept in fp32 on the training device for the model's parameters only (buffers are copied
from the live model: averaging a constant buffer would only add rounding).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

MODES = ("swa_ema", "ema", "swa", "none")


def ema_decay_at(updates_done: int, decay: float, warmup: bool) -> float:
    """EMA decay for the next update. With warm-up, min(decay, (1 + n) / (10 + n)) so that a short run's
    EMA is not dominated by the random init (0.997^300 = 0.41); after ~3000 updates it equals `decay`."""
    if not warmup:
        return decay
    return min(decay, (1.0 + updates_done) / (10.0 + updates_done))


@torch.no_grad()
def ema_update(avg: dict[str, Tensor], current: dict[str, Tensor], decay: float) -> None:
    """avg <- decay * avg + (1 - decay) * current."""
    names = list(avg)
    avgs = [avg[n] for n in names]
    torch._foreach_mul_(avgs, decay)  # one fused kernel per op over all tensors (matters on GPU)
    torch._foreach_add_(avgs, [current[n].detach().float() for n in names], alpha=1.0 - decay)


def blend(ema: dict[str, Tensor], swa_mean: dict[str, Tensor], ema_weight: float) -> dict[str, Tensor]:
    """ema_weight * EMA + (1 - ema_weight) * SWA."""
    return {name: ema_weight * ema[name] + (1.0 - ema_weight) * swa_mean[name] for name in ema}


def _mode(cfg: Any) -> str:
    if cfg.ema and cfg.swa:
        return "swa_ema"
    return "ema" if cfg.ema else ("swa" if cfg.swa else "none")


class WeightAverager:
    def __init__(self, model: nn.Module, cfg: Any):
        if not 0.0 <= cfg.ema_weight <= 1.0:
            raise ValueError(f"averaging.ema_weight must be in [0, 1], got {cfg.ema_weight}")
        if cfg.ema and not 0.0 <= cfg.ema_decay < 1.0:
            raise ValueError(f"averaging.ema_decay must be in [0, 1), got {cfg.ema_decay}")
        if cfg.swa and cfg.swa_every <= 0:
            raise ValueError(f"averaging.swa_every must be > 0, got {cfg.swa_every}")
        self.cfg = cfg
        self.mode = _mode(cfg)
        params = self._params(model)
        self.ema = {n: p.detach().float().clone() for n, p in params.items()} if cfg.ema else None
        self.ema_updates = 0
        self.swa_sum = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()} \
            if cfg.swa else None
        self.swa_count = 0

    @staticmethod
    def _params(model: nn.Module) -> dict[str, Tensor]:
        return dict(model.named_parameters())

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, lr_scale: float) -> None:
        """Call after optimizer step number `step` (1-based count of steps done) at that step's LR scale."""
        params = self._params(model)
        if self.ema is not None:
            decay = ema_decay_at(self.ema_updates, self.cfg.ema_decay, self.cfg.ema_warmup)
            ema_update(self.ema, params, decay)
            self.ema_updates += 1
        late = lr_scale < self.cfg.swa_lr_scale_below
        if self.swa_sum is not None and late and step % self.cfg.swa_every == 0:
            for name, s in self.swa_sum.items():
                s.add_(params[name].detach().float())
            self.swa_count += 1

    @torch.no_grad()
    def averaged_state_dict(self, model: nn.Module) -> tuple[dict[str, Tensor], str]:
        """Final weights (CPU fp32 for floating tensors) and a word saying which average produced them.

        SWA with no snapshot yet (run too short to reach its LR threshold) falls back to EMA, else to the
        live weights; the returned word says so.
        """
        swa_mean = {n: s / self.swa_count for n, s in self.swa_sum.items()} \
            if self.swa_sum is not None and self.swa_count > 0 else None
        if self.ema is not None and swa_mean is not None:
            avg, used = blend(self.ema, swa_mean, self.cfg.ema_weight), "swa_ema"
        elif self.ema is not None:
            avg, used = self.ema, "ema"
        elif swa_mean is not None:
            avg, used = swa_mean, "swa"
        else:
            avg, used = {}, "none"
        out = {}
        for name, t in model.state_dict().items():
            src = avg.get(name, t)
            out[name] = src.detach().to("cpu", torch.float32 if t.is_floating_point() else t.dtype).clone()
        return out, used

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema, "ema_updates": self.ema_updates,
                "swa_sum": self.swa_sum, "swa_count": self.swa_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("ema", "swa_sum"):
            mine, theirs = getattr(self, key), state[key]
            if (mine is None) != (theirs is None):
                raise ValueError(f"checkpoint averaging state {key!r} does not match averaging config "
                                 f"(mode {self.mode!r}); resume with the config that wrote it")
            if mine is not None:
                if set(mine) != set(theirs):
                    raise ValueError(f"checkpoint {key!r} parameter names differ from this model's")
                for name, t in mine.items():
                    t.copy_(theirs[name])
        self.ema_updates = int(state["ema_updates"])
        self.swa_count = int(state["swa_count"])
