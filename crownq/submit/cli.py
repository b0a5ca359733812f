"""`crownq-submit SWEEP_DIR --group CELL --name NAME [--out DIR]`: a records folder for one group.

    crownq-submit multirun/seeds/2026-11-25_19-23-19 --group default --name crownq_gptq_swa
    # -> records/track_10min_16mb/<today>_crownq_gptq_swa/ (train_gpt.py, README.md, submission.json,
    #    train_seed*.log, result_seed*.json, requirements.txt)
"""

from __future__ import annotations

import argparse
import sys

from crownq.submit.records import TRACK_DIR, SubmitError, write_records_folder


def _scores(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--baseline-scores {text!r}: expected numbers such as "
                                         "1.889,1.889,1.887") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crownq-submit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="a finished sweep (or run) folder")
    parser.add_argument("--group", required=True, help="the report's group label or a config digest prefix")
    parser.add_argument("--name", required=True, help="submission name (folder <date>_<name>)")
    parser.add_argument("--out", default=str(TRACK_DIR), help=f"parent folder (default {TRACK_DIR})")
    parser.add_argument("--baseline-scores", type=_scores, default=None,
                        help="the previous record's per-seed val_loss, for the significance lines")
    parser.add_argument("--author", default="")
    parser.add_argument("--github-id", default="")
    args = parser.parse_args(argv)
    try:
        folder = write_records_folder(args.sweep_dir, args.group, args.name, args.out, args.baseline_scores,
                                      args.author, args.github_id)
    except (SubmitError, FileNotFoundError) as exc:
        print(f"crownq-submit: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {folder}")
    for path in sorted(folder.iterdir()):
        print(f"  {path.name:<28} {path.stat().st_size:>10,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
