"""Worker functions for the 2-rank gloo tests (torch.multiprocessing.spawn needs them importable)."""

from __future__ import annotations

import os
import socket

import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_ranks(fn, world: int, *args, attempts: int = 3) -> None:
    """mp.spawn(fn, (world, port, *args)) on a free port; retried on a new port only if another process
    grabbed the port between probing and binding (the machine is shared by parallel test runs)."""
    import torch.multiprocessing as mp

    for attempt in range(attempts):
        try:
            mp.spawn(fn, args=(world, free_port(), *args), nprocs=world, join=True)
            return
        except mp.ProcessRaisedException as exc:
            if "address already in use" not in str(exc).lower() or attempt == attempts - 1:
                raise


def _join(rank: int, world: int, port: int):
    from crownq.distributed import init_distributed

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    return init_distributed("cpu")


def muon_worker(rank: int, world: int, port: int, params: list, grads: list, out_path: str) -> None:
    """Two Muon steps with sharded orthogonalisation; rank 0 saves the resulting matrices."""
    import torch.distributed as dist

    from crownq.train.muon import Muon

    env = _join(rank, world, port)
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    opt = Muon(ps, lr=0.05, momentum=0.9, weight_decay=0.1, rank=env.rank, world_size=env.world_size)
    for g_step in grads:
        for p, g in zip(ps, g_step):
            p.grad = g.clone()
        opt.step()
    if rank == 0:
        torch.save([p.detach() for p in ps], out_path)
    dist.barrier()  # teardown together (see tests/eval/test_distributed.py)
    dist.destroy_process_group()


def train_worker(rank: int, world: int, port: int, cfg_yaml: str, train_files: list, val,
                 out_path: str) -> None:
    """train_model on `world` gloo ranks; every rank saves its final weights (they must agree)."""
    import sys

    import torch.distributed as dist
    from omegaconf import OmegaConf

    sys.path.insert(0, os.path.dirname(__file__))
    from train_helpers import build_micro_model

    from crownq.train import train_model

    env = _join(rank, world, port)
    cfg = OmegaConf.create(cfg_yaml)
    model = build_micro_model(cfg)
    result = train_model(model, cfg, env, train_files, val, None, None, log=lambda m: None)
    torch.save({"state": result.state_dict, "val_loss": result.prequant_val_loss, "steps": result.steps},
               f"{out_path}.rank{rank}")
    dist.barrier()  # teardown together (see tests/eval/test_distributed.py)
    dist.destroy_process_group()
