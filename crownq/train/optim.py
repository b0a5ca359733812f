"""The record's optimizer set: Muon for block matrices, AdamW for embeddings, head and scalars."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from crownq.distributed import DistEnv
from crownq.train.muon import Muon

GROUP_NAMES = ("matrix", "embed", "head", "scalar")


def muon_momentum_at(step: int, tcfg: Any) -> float:
    """Linear warm-up of Muon's momentum from muon_momentum_warmup_start to muon_momentum."""
    if tcfg.muon_momentum_warmup_steps <= 0:
        return float(tcfg.muon_momentum)
    frac = min(step / tcfg.muon_momentum_warmup_steps, 1.0)
    return (1.0 - frac) * tcfg.muon_momentum_warmup_start + frac * tcfg.muon_momentum


def _checked_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    groups = model.optimizer_groups()
    unknown = set(groups) - set(GROUP_NAMES)
    if unknown:
        raise ValueError(f"model.optimizer_groups() returned unknown keys {sorted(unknown)}; "
                         f"expected {GROUP_NAMES}")
    seen: dict[int, str] = {}
    for key, params in groups.items():
        for p in params:
            if id(p) in seen:
                raise ValueError(f"a parameter is in both optimizer groups {seen[id(p)]!r} and {key!r}")
            seen[id(p)] = key
    missing = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(f"parameters in no optimizer group (they would never train): {missing}")
    return {key: list(groups.get(key, [])) for key in GROUP_NAMES}


class Optimizers:
    """Muon + AdamW stepping together; every group's LR is base LR * the schedule's scale."""

    def __init__(self, model: nn.Module, tcfg: Any, dist_env: DistEnv):
        groups = _checked_groups(model)
        tied = not groups["head"]
        self.muon = Muon(groups["matrix"], lr=tcfg.matrix_lr, momentum=tcfg.muon_momentum_warmup_start,
                         backend_steps=tcfg.muon_backend_steps, weight_decay=tcfg.muon_weight_decay,
                         rank=dist_env.rank, world_size=dist_env.world_size,
                         ns_dtype=tcfg.muon_ns_dtype,
                         row_normalize=getattr(tcfg, "muon_row_normalize", False),
                         ns_variant=getattr(tcfg, "muon_ns_coefficients", "quintic"),
                         ) if groups["matrix"] else None
        embed_wd = getattr(tcfg, "embed_weight_decay", -1.0)
        if embed_wd != -1.0 and embed_wd < 0:
            raise ValueError(f"train.embed_weight_decay={embed_wd!r}: expected -1 (= adam_weight_decay) "
                             "or a decay >= 0")
        adam_groups = [
            {"params": groups["embed"], "lr": tcfg.tied_embed_lr if tied else tcfg.embed_lr, "name": "embed",
             "weight_decay": tcfg.adam_weight_decay if embed_wd == -1.0 else embed_wd},
            # An untied head takes plain Adam in the record (no weight decay); tied presets have no head.
            {"params": groups["head"], "lr": tcfg.head_lr, "name": "head", "weight_decay": 0.0},
            {"params": groups["scalar"], "lr": tcfg.scalar_lr, "name": "scalar"},
        ]
        adam_groups = [g for g in adam_groups if g["params"]]
        fused = dist_env.device.type == "cuda"
        self.adam = torch.optim.AdamW(
            adam_groups, betas=(tcfg.adam_beta1, tcfg.adam_beta2), eps=tcfg.adam_eps,
            weight_decay=tcfg.adam_weight_decay, fused=fused or None) if adam_groups else None
        for opt in self.all():
            for group in opt.param_groups:
                group["base_lr"] = group["lr"]
        self.params = [p for key in GROUP_NAMES for p in groups[key]]

    def all(self) -> list[torch.optim.Optimizer]:
        return [opt for opt in (self.muon, self.adam) if opt is not None]

    def set_lr_scale(self, scale: float) -> None:
        for opt in self.all():
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale

    def set_muon_momentum(self, momentum: float) -> None:
        if self.muon is not None:
            for group in self.muon.param_groups:
                group["momentum"] = momentum

    def zero_grad(self) -> None:
        for opt in self.all():
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for opt in self.all():
            opt.step()

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict() if self.muon else None,
                "adam": self.adam.state_dict() if self.adam else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, opt in (("muon", self.muon), ("adam", self.adam)):
            if (state.get(key) is None) != (opt is None):
                raise ValueError(f"checkpoint optimizer {key!r} does not match this model's parameter groups")
            if opt is not None:
                opt.load_state_dict(state[key])
