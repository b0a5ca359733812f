"""report.json -> report.md (what a user pastes into a PR)."""

from __future__ import annotations

import math
from typing import Any

from crownq.report.build import SEED_COLUMNS


def _fmt(value: Any, digits: int = 5) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


# Seconds and milliseconds need no more than one decimal; seeds are labels, not quantities.
_ONE_DECIMAL = ("train_seconds", "step_avg_ms", "eval_seconds")


def _seed_cell(key: str, value: Any) -> Any:
    if key == "seed":
        return str(value)
    if key in _ONE_DECIMAL and isinstance(value, (int, float)):
        return _fmt(float(value), 1)
    return value


def _first_line(text: str | None, limit: int = 160) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:limit] if lines else ""


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _mean_std(stat: dict[str, Any], digits: int = 5) -> str:
    if not stat["n"]:
        return "-"
    if stat["n"] == 1:  # one seed has no spread to show
        return _fmt(stat["mean"], digits)
    return f"{_fmt(stat['mean'], digits)} ± {_fmt(stat['std'], digits)}"


def _p(test: dict[str, Any] | None) -> str:
    return "-" if not test else f"t={test['t_statistic']:.2f}, p={test['p_value']:.3g}"


def _seeds(n: int | None) -> str:
    return "never" if n is None else str(n)


def _baseline_section(tested: list[dict[str, Any]], margin: float) -> list[str]:
    """Tests against the baseline, each labelled with what it assumes."""
    lines = ["## Against the baseline (val_loss, nats)", "",
             "Welch: two-sided test of equal means. Improvement: one-sided test that the group is "
             f"better by at least {margin:g} nats (the record rule, p < 0.01). Paired: the same two tests "
             "on per-seed differences over the seeds both ran (same seed = same init and data order). "
             "Leaderboard p: one-sided Welch of per-seed val_bpb, no margin (what the leaderboard "
             "quoted). Seeds needed: seeds per arm at which the observed gain and spread would reach "
             f"p < 0.01, for the gain itself and for the gain minus {margin:g} nats (the record bar); "
             "'never' = the gain is not there.", ""]
    rows, more = [], []
    for g in tested:
        vs = g["vs_baseline"]
        welch, imp = vs["welch"] or {}, vs["improvement_test"] or {}
        needed = vs.get("seeds_needed") or {}
        rows.append([g["label"], vs["improvement_nats"], welch.get("t_statistic"), welch.get("p_value"),
                     imp.get("t_statistic"), imp.get("df"), imp.get("p_value"), vs["verdict"]])
        more.append([g["label"], _p(vs.get("paired")), _p(vs.get("paired_improvement")),
                     _p(vs.get("leaderboard")), _seeds(needed.get("p01")), _seeds(needed.get("record_bar")),
                     _seeds(needed.get("paired_record_bar")) if vs.get("paired") else "-"])
    lines += _table(["group", "gain", "Welch t", "Welch p", "improvement t", "df", "improvement p",
                     "verdict"], rows) + [""]
    lines += _table(["group", "paired", "paired improvement", "leaderboard p (bpb)", "seeds needed p<0.01",
                     "seeds needed bar", "seeds needed bar (paired)"], more) + [""]
    return lines


def _code_cell(group: dict[str, Any]) -> str:
    """Counted code bytes, with the uncompressed program beside them when the count is compressed."""
    counted, program = group.get("artifact_bytes_code"), group.get("artifact_bytes_code_program")
    if counted is None:
        return "-"
    if group.get("code_bytes_mode") == "compressed" and program:
        return f"{counted:,} (compressed; program {program:,})"
    return f"{counted:,}" + (f" ({group['code_bytes_mode']})" if group.get("code_bytes_mode") else "")


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Sweep report: `{report['sweep_dir']}`", "",
             f"{report['runs_ok']} of {report['runs_total']} runs finished. Mean ± sample std over seeds; "
             f"limits: artifact <= {report['limits']['artifact_bytes']:,} bytes, train and eval <= "
             f"{report['limits']['train_seconds']:.0f} s each (the 8xH100 rules).", ""]
    base = report["baseline"]
    if base:
        name = f"group `{base['group']}`" if base.get("group") else "given scores"
        lines += [f"Baseline: {name}, val_loss {', '.join(f'{v:.8f}' for v in base['val_loss'])}.", ""]
    lines += ["## Summary", ""]
    header = ["group", "seeds", "val_bpb", "val_loss", "artifact bytes", "model bytes",
              "code bytes (counted)", "artifact ok", "train ok", "eval ok"]
    rows = [[g["label"], len(g["seeds_ok"]), _mean_std(g["val_bpb"]), _mean_std(g["val_loss"]),
             _mean_std(g["artifact_bytes_total"], 0), _mean_std(g["artifact_bytes_model"], 0),
             _code_cell(g), g["compliance"]["artifact_under_16mb"],
             g["compliance"]["train_under_600s"], g["compliance"]["eval_under_600s"]]
            for g in report["groups"]]
    lines += _table(header, rows) + [""]
    tested = [g for g in report["groups"] if g.get("vs_baseline")]
    if tested:
        lines += _baseline_section(tested, report["limits"]["margin_nats"])
    lines += ["## Per seed", ""]
    for g in report["groups"]:
        lines += [f"### {g['label']} (config `{g['config_digest'][:12]}`)", ""]
        if g["seed_rows"]:
            header = ["seed", "steps", "train s", "step ms", "pre-quant bpb", "roundtrip bpb", "sliding bpb",
                      "val_bpb", "val_loss", "total bytes", "pruned", "eval s"]
            lines += _table(header, [[_seed_cell(k, r[k]) for k in SEED_COLUMNS] for r in g["seed_rows"]])
            lines += [""]
            reused = [r for r in g["seed_rows"] if r.get("reused_from")]
            lines += [f"Seed {r['seed']} reused from `{r['reused_from']}` (same config and code digest)."
                      for r in reused] + ([""] if reused else [])
        else:
            lines += ["No finished seeds.", ""]
    failed = [(g["label"], f) for g in report["groups"] for f in g["failed"]]
    if failed:
        lines += ["## Failed runs", ""]
        lines += _table(["group", "seed", "status", "run folder", "error"],
                        [[label, f["seed"], f["status"], f["run_dir"], _first_line(f["error"])]
                         for label, f in failed]) + [""]
    return "\n".join(lines)
