"""Training throughput (forward + backward + Muon/AdamW step) per model config, as a table.

    PYTHONPATH=. python3 benchmarks/bench_train.py                  # tiny + mid on CPU (+ crownq_11l on GPU)
    PYTHONPATH=. python3 benchmarks/bench_train.py --configs tiny:cpu_tiny --steps 20 --threads 2

Each row runs the real training step (crownq.train.loop.Trainer.step: micro-steps, gradient clip,
Muon + AdamW) on random tokens, after warm-up steps, with late QAT off ("plain") and on ("qat": int6
fake quantisation of every quantizable linear + the CROWN-Q term). Timings on a shared machine are
noisy: compare rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from crownq.config import register_configs
from crownq.distributed import DistEnv
from crownq.model import build_model
from crownq.train.loop import Trainer

CONF = Path(__file__).resolve().parents[1] / "conf"


class RandomTokens:
    """Stands in for DistributedTokenLoader: the benchmark measures compute, not disk."""

    def __init__(self, vocab: int, device: torch.device):
        self.vocab, self.device = vocab, device

    def next_batch(self, global_batch_tokens: int, seq_len: int, grad_accum_steps: int):
        x = torch.randint(0, self.vocab, (global_batch_tokens // seq_len // grad_accum_steps, seq_len + 1),
                          device=self.device)
        return x[:, :-1], x[:, 1:]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def bench(arch: str, train: str, device: torch.device, steps: int, warmup: int,
          extra: list[str]) -> list[dict]:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"arch={arch}", f"train={train}", *extra])
    torch.manual_seed(0)
    model = build_model(cfg.arch).to(device)
    env = DistEnv(device=device)
    trainer = Trainer(model, cfg, env, RandomTokens(cfg.arch.vocab_size, device), log=lambda m: None)
    trainer.say = lambda line: None
    rows = []
    for mode, scale in (("plain", 1.0), ("qat", 0.01)):
        for i in range(warmup):
            trainer.step(i, scale)
        trainer.sync()
        times = []
        for i in range(steps):
            t0 = time.perf_counter()
            trainer.step(warmup + i, scale)
            trainer.sync()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rows.append({"arch": arch, "train": train, "mode": mode, "device": str(device),
                     "params": sum(p.numel() for p in model.parameters()),
                     "tokens/step": cfg.train.train_batch_tokens, "ms/step": 1000 * med,
                     "tokens/s": cfg.train.train_batch_tokens / med,
                     "spread": (max(times) - min(times)) / med})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="*", default=None,
                    help="arch:train pairs (default tiny:cpu_tiny mid:cpu_mid, + crownq_11l on CUDA)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. train.compile=on")
    args = ap.parse_args()
    register_configs()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    configs = args.configs or (["tiny:cpu_tiny", "mid:cpu_mid"]
                               + (["crownq_11l:record_8xh100"] if cuda else []))
    rows = []
    for item in configs:
        arch, train = item.split(":")
        extra = list(args.overrides)
        if cuda and train == "record_8xh100":
            extra.append("train.grad_accum_steps=8")  # one GPU doing all 8 ranks' 786,432 tokens
        rows += bench(arch, train, device, args.steps, args.warmup, extra)
    name = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"\ntraining throughput on {name}, torch {torch.__version__} (median of {args.steps} steps)")
    print(f"{'arch':<12}{'train':<16}{'mode':<7}{'params':>12}{'tok/step':>10}{'ms/step':>10}{'tokens/s':>11}"
          f"{'spread':>8}")
    for r in rows:
        print(f"{r['arch']:<12}{r['train']:<16}{r['mode']:<7}{r['params']:>12,}{r['tokens/step']:>10,}"
              f"{r['ms/step']:>10.1f}{r['tokens/s']:>11,.0f}{r['spread']:>8.0%}")


if __name__ == "__main__":
    main()
