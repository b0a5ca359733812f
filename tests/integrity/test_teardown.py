"""A finished multi-rank run must not fail at exit. Left to interpreter exit, two gloo ranks tear their
group down one by one, and the rank that goes second can abort ("terminate called without an active
exception", exit -6: torchrun then reports the whole job failed although result.json says ok; seen in a
CI rehearsal on the 2-rank bundle test; 10 of 85 bare torchrun launches on a 2-core machine).
crownq.distributed.shutdown makes the ranks leave together; crownq's entry points (launch.py /
crownq-run, a bundled train_gpt.py, and a SLURM job's task) call it after a run that finished."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from crownq.distributed import shutdown

REPO = Path(__file__).resolve().parents[2]
LATE_S = 1.0


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    x = torch.ones(4)
    dist.all_reduce(x)
    if rank == 0:
        time.sleep(LATE_S)  # rank 0 still writing its result when rank 1 is done
    arrived = time.time()
    shutdown()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(
        {"arrived": arrived, "left": time.time(), "initialized": dist.is_initialized()}))


def test_shutdown_waits_for_every_rank_then_leaves_the_group(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert not r0["initialized"] and not r1["initialized"]
    # Rank 1 arrived about LATE_S early and left only once rank 0 had arrived too.
    assert r0["arrived"] - r1["arrived"] > 0.5 * LATE_S
    assert r1["left"] >= r0["arrived"] - 0.05


def _shutdown_follows(path: Path, function: str, run_call: str) -> bool:
    """Whether `function` in `path` calls shutdown() on a line after its call of `run_call` (the run)."""
    tree = ast.parse(path.read_text())
    body = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    lines: dict[str, list[int]] = {}
    for node in ast.walk(body):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            lines.setdefault(name, []).append(node.lineno)
    runs = [line for name, found in lines.items() if name.startswith(run_call) for line in found]
    return bool(runs) and any(line > min(runs) for line in lines.get("shutdown", []))


def test_every_entry_point_leaves_the_group_after_a_finished_run():
    assert _shutdown_follows(REPO / "crownq/submit/runtime.py", "main", "run_bundled")
    assert _shutdown_follows(REPO / "crownq/entry.py", "main", "hydra.main")
    assert _shutdown_follows(REPO / "crownq/slurm/launcher.py", "__call__", "run_job")
    # The check can fail: in run_bundled itself nothing calls shutdown.
    assert not _shutdown_follows(REPO / "crownq/submit/runtime.py", "run_bundled", "run_recipe")
