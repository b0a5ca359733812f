"""Forward+backward speed of the model per arch option (model only: no optimizer, no data loading).

    python benchmarks/bench_model.py                         # tiny and mid on this machine
    python benchmarks/bench_model.py --archs tiny mid crownq_11l --batch 8 --seq 256 --steps 10

Prints one table row per (arch, autocast) with params, ms/step and tokens/s. Timings on a shared
machine are noisy: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
from omegaconf import OmegaConf

from crownq.model import build_model
from crownq.paths import conf_dir


def load_arch_option(name: str, vocab_size: int = 1024):
    """conf/arch/<name>.yaml alone (the other groups do not matter for a model benchmark)."""
    path = conf_dir() / "arch" / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (conf_dir() / "arch").glob("*.yaml"))
        raise SystemExit(f"no arch option {name!r} ({path} missing); options: {options}")
    root = OmegaConf.merge({"data": {"vocab_size": vocab_size}}, {"arch": OmegaConf.load(path)})
    return root.arch


def time_fwd_bwd(arch: str, batch: int, seq: int, steps: int, warmup: int, device: str, bf16: bool
                 ) -> tuple[int, float, float, float]:
    """(parameter count, median wall ms, fastest wall ms, median process-CPU ms) per fwd+bwd step.

    The fastest step and the CPU time are reported too because on a shared machine the median wall
    time mostly measures the neighbours.
    """
    arch_cfg = load_arch_option(arch)
    torch.manual_seed(0)
    model = build_model(arch_cfg).to(device)
    x = torch.randint(0, arch_cfg.vocab_size, (batch, seq), device=device)
    y = torch.randint(0, arch_cfg.vocab_size, (batch, seq), device=device)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16) if bf16 else nullcontext()
    times, cpu_times = [], []
    for i in range(warmup + steps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        with autocast:
            loss = model(x, y)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
            cpu_times.append((time.process_time() - c0) * 1000)
    return model.num_params(), statistics.median(times), min(times), statistics.median(cpu_times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["tiny", "mid"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--autocast", choices=["off", "bf16", "both"], default="off")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    modes = {"off": [False], "bf16": [True], "both": [False, True]}[args.autocast]
    print(f"device={args.device} threads={torch.get_num_threads()} batch={args.batch}x{args.seq} "
          f"torch={torch.__version__}")
    print(f"| arch | autocast | params | wall ms/step (median of {args.steps}) | tokens/s (median) "
          "| fastest step ms | process CPU ms/step |")
    print("|---|---|---|---|---|---|---|")
    for arch in args.archs:
        for bf16 in modes:
            params, ms, fastest, cpu_ms = time_fwd_bwd(arch, args.batch, args.seq, args.steps, args.warmup,
                                              args.device, bf16)
            tokens_per_s = args.batch * args.seq / (ms / 1000)
            print(f"| {arch} | {'bf16' if bf16 else 'fp32'} | {params:,} | {ms:.1f} | {tokens_per_s:,.0f} "
                  f"| {fastest:.1f} | {cpu_ms:.1f} |", flush=True)


if __name__ == "__main__":
    main()
