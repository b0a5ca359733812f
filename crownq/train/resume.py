"""Everything a bit-identical resume needs, gathered from every rank into one checkpoint file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch import nn

from crownq.distributed import DistEnv
from crownq.train.averaging import WeightAverager
from crownq.train.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from crownq.train.optim import Optimizers


@dataclass
class TrainState:
    step: int = 0
    elapsed: float = 0.0  # training seconds so far (what the wallclock cap counts)
    history: list[dict] = field(default_factory=list)
    burst_done: bool = False


def _gather(obj: Any, dist_env: DistEnv) -> list[Any]:
    if dist_env.world_size <= 1:
        return [obj]
    out: list[Any] = [None] * dist_env.world_size
    dist.all_gather_object(out, obj)
    return out


def save_train_state(path: Path, state: TrainState, model: nn.Module, opts: Optimizers,
                     averager: WeightAverager, loader: Any, dist_env: DistEnv,
                     owner: dict[str, Any] | None = None) -> None:
    """Collective: every rank must call it. Model, optimizer and averages are identical on all ranks
    (all-reduced gradients, replicated Muon state), so rank 0's copy is written; loader positions and
    RNG states differ per rank and are gathered. `owner` (seed, training digest) is stored so that only
    the run it belongs to resumes it."""
    per_rank = _gather({"loader": loader.state_dict(), "rng": capture_rng_state()}, dist_env)
    if dist_env.is_main:
        save_checkpoint(path, {
            **({"owner": dict(owner)} if owner else {}),
            "step": state.step, "elapsed": state.elapsed, "history": state.history,
            "burst_done": state.burst_done, "world_size": dist_env.world_size,
            "model": model.state_dict(), "optimizers": opts.state_dict(),
            "averager": averager.state_dict(), "per_rank": per_rank,
        })
    if dist_env.world_size > 1:
        dist.barrier()


def check_owner(path: Path, stored: dict[str, Any] | None, owner: dict[str, Any] | None) -> None:
    """Refuse a checkpoint of another run: resuming it would report its training as this run's.

    Nothing is deleted: the message says how to start afresh and leaves the choice to the user."""
    if owner is None:
        return
    stored = stored or {}
    differs = [key for key in ("seed", "training_digest") if stored.get(key) != owner.get(key)]
    if not differs:
        return
    def show(d: dict[str, Any]) -> str:
        return f"seed {d.get('seed')}, training digest {str(d.get('training_digest'))[:12]}"
    raise ValueError(
        f"{path} belongs to another run ({show(stored)}); this run is {show(owner)} "
        f"({' and '.join(differs)} differ{'s' if len(differs) == 1 else ''}). Refusing to resume it. To "
        f"start afresh, run in a new folder (hydra.run.dir=...) or move {path.parent} away; crownq "
        "deletes nothing")


def load_train_state(path: Path, model: nn.Module, opts: Optimizers, averager: WeightAverager,
                     loader: Any, dist_env: DistEnv, owner: dict[str, Any] | None = None) -> TrainState:
    ckpt = load_checkpoint(path, map_location=dist_env.device)
    check_owner(path, ckpt.get("owner"), owner)
    if ckpt["world_size"] != dist_env.world_size:
        raise ValueError(f"{path} was written by {ckpt['world_size']} ranks; this run has "
                         f"{dist_env.world_size}. Resume with the same world size or delete the checkpoint.")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"{path} holds weights of another model (arch config changed?): {exc}") from exc
    opts.load_state_dict(ckpt["optimizers"])
    averager.load_state_dict(ckpt["averager"])
    mine = ckpt["per_rank"][dist_env.rank]
    loader.load_state_dict(mine["loader"])
    rng = mine["rng"]
    rng["torch_cpu"] = rng["torch_cpu"].cpu()
    rng["torch_cuda"] = [t.cpu() for t in rng["torch_cuda"]]
    restore_rng_state(rng)
    return TrainState(step=int(ckpt["step"]), elapsed=float(ckpt["elapsed"]), history=list(ckpt["history"]),
                      burst_done=bool(ckpt["burst_done"]))
