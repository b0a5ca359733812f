"""Toy Hydra app with the pipeline's contract: result.json in the run folder, resumable training that
checkpoints and raises TrainingPreempted on SIGTERM/SIGUSR1/request_stop, rank 0 writes, returns a dict.

The "training" is SGD on a 16-dim least-squares problem whose batches depend only on (seed, step), so a
run interrupted and resumed from its checkpoint must end with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import hydra
import torch
import torch.distributed as dist
from omegaconf import DictConfig

import crownq
from crownq.distributed import init_distributed
from crownq.results import write_json_atomic
from crownq.train.signals import StopSignalHandler, TrainingPreempted, stop_requested

DIM, BATCH = 16, 8


def batch(seed: int, step: int, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed * 100_003 + step)
    x = torch.randn(BATCH * 2, DIM, generator=gen, dtype=torch.float64)
    y = x @ torch.linspace(-1, 1, DIM, dtype=torch.float64) + 0.1 * torch.randn(BATCH * 2, generator=gen,
                                                                                  dtype=torch.float64)
    share = (BATCH * 2) // world
    return x[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share]


def train(seed: int, steps: int, step_seconds: float = 0.0, ckpt: Path | None = None, rank: int = 0,
          world: int = 1, progress: Path | None = None) -> dict:
    w, start = torch.zeros(DIM, dtype=torch.float64), 0
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        w, start = state["w"], int(state["step"])
    with StopSignalHandler():
        for step in range(start, steps):
            if stop_requested():
                if rank == 0 and ckpt is not None:
                    tmp = ckpt.with_suffix(".tmp")
                    torch.save({"w": w, "step": torch.tensor(step)}, tmp)
                    os.replace(tmp, ckpt)
                raise TrainingPreempted(step, str(ckpt), stop_requested() or "")
            x, y = batch(seed, step, rank, world)
            grad = 2 * x.T @ (x @ w - y) / (BATCH * 2)
            if world > 1:
                dist.all_reduce(grad)
            w = w - 0.05 * grad
            if progress is not None and rank == 0:
                progress.write_text(str(step + 1))
            time.sleep(step_seconds)
    return {"w_sum": float(w.sum()), "w_norm": float(w.norm()), "resumed_from_step": start}


@hydra.main(config_path="toy_conf", config_name="toy", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig

    env = init_distributed("cpu")
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    identity = {"seed": int(cfg.seed), "world_size": env.world_size, "run_dir": str(run_dir)}
    if env.is_main:
        write_json_atomic(run_dir / "result.json", {**identity, "status": "running"})
    debug = cfg.get("debug") or {}
    if debug.get("crash_seed") == cfg.seed:
        os.kill(os.getpid(), signal.SIGKILL)  # dies hard: no exception, no result, like an OOM kill
    rank_sum = torch.tensor(float(env.rank))
    if env.distributed:
        dist.all_reduce(rank_sum)
    try:
        out = train(int(cfg.seed), int(cfg.steps), float(cfg.step_seconds), run_dir / "ckpt.pt", env.rank,
                    env.world_size, run_dir / "progress")
    except TrainingPreempted as exc:
        if env.is_main:
            write_json_atomic(run_dir / "result.json", {**identity, "status": "interrupted",
                                                        "error": str(exc)})
        raise
    result = {**identity, **out, "status": "ok", "rank": env.rank, "rank_sum": float(rank_sum),
              "message": cfg.message, "crownq_file": crownq.__file__,
              "marker": getattr(crownq, "_TOY_MARKER", None),
              "code_snapshot_env": os.environ.get("CROWNQ_CODE_SNAPSHOT"),
              "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}
    if env.is_main:
        write_json_atomic(run_dir / "result.json", result)
    return result


if __name__ == "__main__":
    main()
