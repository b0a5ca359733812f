"""The records folder's README.md, from the report's group entry and the bundle's facts."""

from __future__ import annotations

import json
from typing import Any

from crownq.report.render import _fmt, _mean_std

RECORD_OVERRIDES = ("arch=crownq_11l", "data=fineweb_sp1024", "train=record_8xh100", "quantizer=gptq_int6",
                    "averaging=swa_ema", "eval=sliding64")
RECORD_CODE_BYTES = 95_390  # the record's counted (raw) script


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def record_differences(payload: dict[str, Any], record_payload: dict[str, Any] | None) -> list[tuple]:
    """(key, record value, this configuration's value) for every resolved key that differs."""
    if record_payload is None:
        return []
    mine, record = _flat(payload), _flat(record_payload)
    missing = object()
    return [(k, record.get(k, "(absent)"), mine.get(k, "(absent)")) for k in sorted(set(mine) | set(record))
            if mine.get(k, missing) != record.get(k, missing)]


def _value(v: Any) -> str:
    return f"`{json.dumps(v) if not isinstance(v, str) else v}`"


def render_readme(name: str, group: dict[str, Any], diffs: list[tuple] | None, bundle, note: str = "") -> str:
    rows = group["seed_rows"]
    lines = [f"# {name}", "",
             f"crownq configuration `{group['config_digest'][:12]}` (sweep group `{group['label']}`), "
             f"{len(rows)} seed(s) on {group.get('hardware') or 'unknown hardware'}, "
             f"PyTorch {group.get('torch_version') or '?'}.", "",
             f"**val_bpb {_mean_std(group['val_bpb'], 8)}** "
             f"(val_loss {_mean_std(group['val_loss'], 8)} nats), "
             f"artifact {_mean_std(group['artifact_bytes_total'], 0)} bytes.", ""]
    lines += ["## What this configuration changes against the record", ""]
    if diffs is None:
        lines += [f"Not computed: {note or 'the record configuration could not be composed'}.", ""]
    elif not diffs:
        lines += ["Nothing: this is the record's configuration (" + " ".join(RECORD_OVERRIDES) + ").", ""]
    else:
        lines += ["Resolved configuration keys that differ from `" + " ".join(RECORD_OVERRIDES) + "`:", "",
                  "| key | record | this submission |", "|---|---|---|"]
        lines += [f"| `{k}` | {_value(a)} | {_value(b)} |" for k, a, b in diffs] + [""]
    lines += ["## Per seed", "", "| seed | steps | train s | val_bpb | val_loss | artifact bytes | eval s |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {_fmt(r['steps'])} | {_fmt(r['train_seconds'], 1)} "
              f"| {_fmt(r['val_bpb'], 8)} | {_fmt(r['val_loss'], 8)} | {_fmt(r['artifact_bytes_total'])} "
              f"| {_fmt(r['eval_seconds'], 1)} |" for r in rows]
    lines += ["", f"Mean ± sample std: val_bpb {_mean_std(group['val_bpb'], 8)}, val_loss "
                  f"{_mean_std(group['val_loss'], 8)}.", ""]
    lines += ["## Significance", ""]
    vs = group.get("vs_baseline")
    if vs:
        welch, imp = vs.get("welch") or {}, vs.get("improvement_test") or {}
        lines += [f"- gain over the baseline: {_fmt(vs.get('improvement_nats'), 5)} nats of val_loss",
                  f"- Welch (two-sided): t = {_fmt(welch.get('t_statistic'), 3)}, "
                  f"p = {_fmt(welch.get('p_value'), 4)}",
                  "- record rule (>= 0.005 nats, one-sided, p < 0.01): "
                  f"t = {_fmt(imp.get('t_statistic'), 3)}, "
                  f"df = {_fmt(imp.get('df'), 2)}, p = {_fmt(imp.get('p_value'), 4)}",
                  f"- verdict: **{vs.get('verdict')}**", ""]
    else:
        lines += ["No baseline given (`crownq-submit ... --baseline-scores x,y,z` adds the tests).", ""]
    lines += ["## Compliance", ""]
    lines += [f"- {key}: {_fmt(value)}" for key, value in group["compliance"].items()]
    lines += [f"- code bytes: {bundle.size:,} ({bundle.mode} `train_gpt.py`; the record counted "
              f"{RECORD_CODE_BYTES:,} raw bytes)", ""]
    lines += ["## How to run", "",
              "```bash",
              "pip install -r requirements.txt",
              "# data in the challenge's layout: ./data/datasets/<name>/ and ./data/tokenizers/ (or set",
              "# DATA_PATH / TOKENIZER_PATH); the embedded CPU corpus is built on first use",
              "SEED=1337 torchrun --standalone --nproc_per_node=8 train_gpt.py",
              "SEED=1337 python train_gpt.py     # one process (CPU or one GPU)",
              "```", "",
              "Each run writes `run_seed<SEED>/result.json` and `artifact.ptz` (RUN_DIR overrides the "
              "folder). `train_gpt.py` holds the resolved configuration and exactly the crownq modules the "
              f"recipe imports ({len(bundle.modules)} modules)"
              + ("; `train_gpt_source.py` is the program the compressed file unpacks and runs." if
                 bundle.mode == "compressed" else "."), ""]
    return "\n".join(lines)
