"""Training speed (tokens/s) of each frontier switch against the March record's behaviour, on the CPU
tiny size: the cost side of each switch in sweeps/ablate_frontier_model.

    python benchmarks/bench_frontier.py                       # every conf/frontier option, 12 steps each
    python benchmarks/bench_frontier.py --options record loop full --steps 20

Each row is one full optimizer step (forward, backward, gradient clip, Muon + AdamW) of arch=tiny with
train=cpu_tiny and `frontier=<option>`, on random tokens with a BOS every ~64 tokens (so document-aware
attention has boundaries to respect), depth recurrence on (its costly phase). Timings on a shared
machine are noisy: options are measured round-robin and the fastest step of each is reported next to
the median, with the ratio to `record` of the fastest.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from crownq.describe import compose_config
from crownq.distributed import DistEnv
from crownq.model import build_model
from crownq.paths import conf_dir
from crownq.train.optim import Optimizers


def make_step(option: str):
    cfg = compose_config([f"frontier={option}"])
    torch.manual_seed(0)
    model = build_model(cfg.arch).train()
    model.looping_active = cfg.arch.num_loops > 0
    opts = Optimizers(model, cfg.train, DistEnv())
    seq, batch = int(cfg.train.seq_len), int(cfg.train.train_batch_tokens)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(2, int(cfg.arch.vocab_size), (batch // seq, seq + 1), generator=gen)
    ids[torch.rand(ids.shape, generator=gen) < 1 / 64] = int(cfg.arch.bos_id)
    x, y = ids[:, :-1], ids[:, 1:]

    def step() -> None:
        opts.zero_grad()
        model(x, y).backward()
        torch.nn.utils.clip_grad_norm_(opts.params, float(cfg.train.grad_clip_norm))
        opts.step()

    return step, batch, model.num_params()


def main() -> None:
    options = sorted(p.stem for p in (conf_dir() / "frontier").glob("*.yaml"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--options", nargs="+", default=["record"] + [o for o in options if o != "record"])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    runs = {name: make_step(name) for name in args.options}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(args.warmup + args.steps):
        for name, (step, _, _) in runs.items():  # round-robin: neighbours' load hits every option alike
            t0 = time.perf_counter()
            step()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    base = min(times["record"]) if "record" in times else None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps each")
    print(f"{'option':<16} {'params':>9} {'ms/step (median)':>17} {'tok/s (fastest)':>16} {'vs record':>10}")
    for name, (_, batch, params) in runs.items():
        fastest, median = min(times[name]), statistics.median(times[name])
        ratio = f"{base / fastest:.2f}x" if base else "-"
        print(f"{name:<16} {params:>9,} {median * 1e3:>17.1f} {batch / fastest:>16,.0f} {ratio:>10}")


if __name__ == "__main__":
    main()
