"""`crownq-describe [hydra overrides]`: compose the run config as launch.py does and print the model.

    crownq-describe                      # the CPU default (arch=tiny)
    crownq-describe arch=crownq_11l      # ... ends with `model_params: 27124848`
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig
from torch import nn

import crownq

REPO_ROOT = Path(crownq.__file__).resolve().parents[1]


def compose_config(overrides: list[str]) -> DictConfig:
    """The run config exactly as `python launch.py <overrides>` would see it (schema-checked)."""
    from hydra import compose, initialize_config_dir

    from crownq.config import register_configs
    from crownq.paths import conf_dir

    register_configs()  # the schema and the sweeps, as crownq-run registers them
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="crownq_describe"):
        return compose(config_name="config", overrides=list(overrides))


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)


def parameter_rows(model: nn.Module, max_depth: int = 3) -> list[tuple[str, str, int]]:
    """(module path, shapes of its own parameters, parameters in its subtree), down to max_depth."""
    rows = []
    for name, module in model.named_modules():
        depth = 0 if not name else name.count(".") + 1
        if depth > max_depth:
            continue
        total = sum(p.numel() for p in module.parameters() if p.requires_grad)
        if depth == max_depth or not list(module.children()):
            own = ", ".join(f"{n}{list(p.shape)}" for n, p in module.named_parameters())
        else:
            own = ", ".join(f"{n}{list(p.shape)}" for n, p in module.named_parameters(recurse=False))
        rows.append((name or "(model)", own, total))
    return rows


def flops_lines(model: nn.Module, cfg: DictConfig) -> list[str]:
    """Training FLOPs per token and per optimizer step (train.train_batch_tokens) at train.seq_len;
    with depth recurrence, before and after looping switches on."""
    from crownq.model.flops import training_flops_per_token

    seq_len, batch = int(cfg.train.seq_len), int(cfg.train.train_batch_tokens)
    states = [("", model.looping_active)]
    if model.cfg.num_loops > 0:
        states = [(" (looping off)", False), (" (looping on)", True)]
    lines = []
    for label, looping in states:
        per_token = training_flops_per_token(model, seq_len, looping)
        lines.append(f"train_flops_per_token{label}: {per_token:.4g}  per step ({batch:,} tokens at seq "
                     f"{seq_len}): {per_token * batch:.4g}")
    return lines


def describe(overrides: list[str]) -> str:
    from crownq.model import build_model

    cfg = compose_config(overrides)
    model = build_model(cfg.arch)
    lines = [f"arch: {cfg.arch.name}  (overrides: {' '.join(overrides) or 'none'})"]
    rows = parameter_rows(model)
    width = max(len(r[0]) for r in rows)
    lines.append(f"{'module'.ljust(width)}  {'params':>11}  parameters held")
    for name, own, total in rows:
        lines.append(f"{name.ljust(width)}  {total:>11,}  {own}")
    lines.append("")
    for group, params in model.optimizer_groups().items():
        n = sum(p.numel() for p in params)
        lines.append(f"optimizer group {group:<7} {n:>11,}  ({len(params)} tensors)")
    by_export: dict[str, int] = {}
    state = model.state_dict()
    for name, group in model.export_groups().items():
        by_export[group] = by_export.get(group, 0) + state[name].numel()
    for group, n in sorted(by_export.items()):
        lines.append(f"export group    {group:<7} {n:>11,}")
    quant = sum(m.weight.numel() for _, m in model.quantizable_linears())
    lines.append(f"quantizable linears: {len(model.quantizable_linears())} ({quant:,} weights)")
    lines.extend(flops_lines(model, cfg))
    lines.append(f"model_params: {model.num_params()}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    print(describe(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
