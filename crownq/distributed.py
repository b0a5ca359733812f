"""Who am I in a multi-process job: rank and world from torchrun's or SLURM/submitit's environment.

Ranks are never spawned here: torchrun (by hand) or SLURM tasks (submitit) start one process per rank,
and this module only reads what they exported and joins the process group (NCCL on GPU, gloo on CPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _export_submitit_env() -> None:
    """Inside a SLURM task started by submitit, export RANK/WORLD_SIZE/MASTER_* the torchrun way."""
    if "RANK" in os.environ or "SLURM_JOB_ID" not in os.environ:
        return
    if int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    try:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    except (ImportError, RuntimeError):
        # Not a submitit job (plain sbatch/srun): derive the same variables from SLURM's own.
        os.environ["RANK"] = os.environ["SLURM_PROCID"]
        os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
        os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ["SLURM_JOB_ID"]) % 20000))


def resolve_device(kind: str = "auto", local_rank: int = 0) -> torch.device:
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device=cuda but torch.cuda.is_available() is False")
        return torch.device("cuda", local_rank)
    if kind != "cpu":
        raise ValueError(f"train.device must be auto, cpu or cuda, got {kind!r}")
    return torch.device("cpu")


def init_distributed(device_kind: str = "auto") -> DistEnv:
    """Read rank/world from the environment, pin the CUDA device, join the process group if world > 1."""
    _export_submitit_env()
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_kind, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                device_id=device if device.type == "cuda" else None)
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(value, src: int = 0):
    """Rank `src`'s value on every rank (a picklable object); the value itself when not distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shutdown() -> None:
    """Leave the process group at the end of a process that finished its work, all ranks together.

    Without it the group is torn down by interpreter exit, rank by rank: a rank whose gloo group goes
    while another still talks to it can abort ("terminate called without an active exception", exit -6)
    after a run that succeeded, and torchrun then reports the whole job failed. Not for failure paths:
    the barrier would wait for a rank that is gone.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
