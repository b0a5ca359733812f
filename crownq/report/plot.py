"""Per-seed val_bpb with each group's mean ± sample std, as a PNG (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_groups(report: dict[str, Any], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = report["groups"]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(groups) + 2.0), 4.0))
    for x, group in enumerate(groups):
        rows = [r for r in group["seed_rows"] if r["val_bpb"] is not None]
        # A small horizontal spread keeps seeds with equal scores visible.
        xs = [x - 0.25 + 0.35 * i / max(1, len(rows) - 1) for i in range(len(rows))]
        ax.scatter(xs, [r["val_bpb"] for r in rows], color="tab:blue", zorder=3, s=18)
        for i, (xi, r) in enumerate(zip(xs, rows)):
            # Alternate labels above and below so neighbouring seeds' labels do not collide.
            ax.annotate(str(r["seed"]), (xi, r["val_bpb"]), fontsize=7, xytext=(-6, 5 if i % 2 == 0 else -11),
                        textcoords="offset points")
        stat = group["val_bpb"]
        if stat["n"]:
            err = stat["std"] if stat["n"] > 1 else 0.0
            ax.errorbar([x + 0.25], [stat["mean"]], yerr=[err], fmt="s", color="tab:red", capsize=4,
                        label="mean ± std" if x == 0 else None)
    ax.set_xticks(range(len(groups)), [g["label"] for g in groups], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("val_bpb (lower is better)")
    ax.set_title("per-seed val_bpb")
    ax.grid(axis="y", alpha=0.3)
    if any(g["val_bpb"]["n"] for g in groups):
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    # Save beside the target and rename: an interrupted save never leaves half a PNG.
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
