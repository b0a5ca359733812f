"""Sliding-window evaluation speed on this machine: the batched implementation (crownq.eval) next to
the straightforward one-window-at-a-time one (tests/oracles/sliding_reference.py), same model, same tokens.

    PYTHONPATH=. python3 benchmarks/bench_sliding.py                 # arch=mid, 16k tokens, 256/64
    PYTHONPATH=. python3 benchmarks/bench_sliding.py --arch tiny --tokens 32768 --batch 64

Prints a table of tokens/s and bpb for both and the speed ratio and |bpb difference|. Timings on a
shared machine are noisy: each method runs --repeat times interleaved and the best time is kept, and
the ratio is only meaningful within one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from crownq.config.arch import ArchConfig
from crownq.data.byte_tables import ByteTables
from crownq.distributed import DistEnv
from crownq.eval import sliding_window_eval
from crownq.model import build_model

REPO = Path(__file__).resolve().parents[1]
# The one-window-at-a-time yardstick is a test oracle (tests/oracles/), not part of the package.
sys.path.insert(0, str(REPO / "tests"))
from oracles.sliding_reference import sliding_window_reference  # noqa: E402


def load_arch(name: str, vocab_size: int) -> ArchConfig:
    raw = OmegaConf.load(REPO / "conf" / "arch" / f"{name}.yaml")
    raw.vocab_size = vocab_size  # the option interpolates ${data.vocab_size}
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ArchConfig), raw))


def synthetic_tables(vocab: int, gen: torch.Generator) -> ByteTables:
    base = torch.randint(1, 6, (vocab,), generator=gen)
    space = torch.rand(vocab, generator=gen) < 0.6
    boundary = torch.zeros(vocab, dtype=torch.bool)
    boundary[:4] = True
    base[boundary] = 0
    return ByteTables(base, space & ~boundary, boundary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mid", help="an option of conf/arch (default: mid)")
    parser.add_argument("--tokens", type=int, default=16384, help="validation tokens scored")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--stride", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="windows per forward (batched path)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    arch = load_arch(args.arch, 1024)
    torch.manual_seed(0)
    model = build_model(arch).eval()
    params = sum(p.numel() for p in model.parameters())
    # Random weights give near-uniform losses; speed does not depend on the values, and bpb equality is
    # checked all the same. Random tokens with a BOS every ~500 exercise the boundary rule.
    val = torch.randint(4, 1024, (args.tokens + 1,), generator=gen)
    val[::500] = 1
    tables = synthetic_tables(1024, gen)

    best = {"batched": float("inf"), "one window at a time": float("inf")}
    bpb: dict[str, float] = {}
    sliding_window_eval(model, val[: 4 * args.seq_len + 1], tables, args.seq_len, args.stride, args.batch,
                        DistEnv())  # warm-up (allocator, kernels)
    for _ in range(args.repeat):
        result = sliding_window_eval(model, val, tables, args.seq_len, args.stride, args.batch, DistEnv())
        best["batched"] = min(best["batched"], result.seconds)
        bpb["batched"] = result.val_bpb
        t0 = time.perf_counter()
        ref = sliding_window_reference(model, val, tables, args.seq_len, args.stride)
        best["one window at a time"] = min(best["one window at a time"], time.perf_counter() - t0)
        bpb["one window at a time"] = ref.val_bpb

    print(f"arch={args.arch} ({params:,} params)  tokens={args.tokens:,}  seq_len={args.seq_len}  "
          f"stride={args.stride}  batch={args.batch}  threads={torch.get_num_threads()}  "
          f"torch={torch.__version__}")
    print(f"| {'method':<22} | {'seconds':>8} | {'tokens/s':>9} | {'val_bpb':>18} |")
    print(f"|{'-' * 24}|{'-' * 10}|{'-' * 11}|{'-' * 20}|")
    for name, seconds in best.items():
        print(f"| {name:<22} | {seconds:8.2f} | {args.tokens / seconds:9.0f} | {bpb[name]:18.12f} |")
    ratio = best["one window at a time"] / best["batched"]
    diff = abs(bpb["batched"] - bpb["one window at a time"])
    print(f"speed-up {ratio:.2f}x (target >= 2x)   |bpb difference| = {diff:.3e} (target <= 1e-9)")


if __name__ == "__main__":
    main()
