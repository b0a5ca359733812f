"""`crownq-data`: build the embedded dataset or download the published FineWeb shards."""

from __future__ import annotations

import argparse
import sys

from crownq.data.embedded import EmbeddedOptions, build_embedded
from crownq.data.fineweb import VARIANTS, DownloadError, download_fineweb


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crownq-data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    defaults = EmbeddedOptions()
    embedded = commands.add_parser("embedded", help="build the embedded corpus from CPython's documentation")
    embedded.add_argument("--vocab-size", "--vocab", dest="vocab_size", type=int, default=defaults.vocab_size)
    embedded.add_argument(
        "--caseops",
        action="store_true",
        help="CaseOps-transform the text (lossless case operators) and write the validation byte sidecar",
    )
    embedded.add_argument(
        "--min-bytes",
        type=int,
        default=defaults.min_corpus_bytes,
        help="gather at least this much text (default %(default)s)",
    )
    embedded.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    embedded.add_argument("--shard-tokens", type=int, default=defaults.shard_tokens)
    embedded.add_argument(
        "--out",
        default=None,
        help="output folder (default: $CROWNQ_DATA_DIR or ~/.cache/crownq, keyed by inputs)",
    )
    embedded.add_argument("--force", action="store_true", help="rebuild even if a valid build exists")

    fineweb = commands.add_parser("fineweb", help="download the published FineWeb shards and tokenizer")
    fineweb.add_argument(
        "--variant", default="sp1024", help=f"one of {', '.join(VARIANTS)} (default %(default)s)"
    )
    fineweb.add_argument("--train-shards", type=int, default=80, help="number of 100M-token train shards")
    fineweb.add_argument("--out", default=None, help="output folder (default data/<the variant's dataset>)")
    fineweb.add_argument("--repo", default=None, help="hub dataset repo (default: the variant's)")
    fineweb.add_argument("--endpoint", default=None, help="hub URL (default $HF_ENDPOINT or huggingface.co)")
    fineweb.add_argument("--timeout", type=float, default=10.0, help="seconds before the hub counts as down")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "embedded":
            options = EmbeddedOptions(
                args.vocab_size, args.min_bytes, args.val_fraction, args.shard_tokens, args.caseops
            )
            folder = build_embedded(options, out_dir=args.out, force=args.force)
        else:
            folder = download_fineweb(
                args.variant, args.train_shards, args.out, args.repo, args.endpoint, args.timeout
            )
    except (DownloadError, ValueError, FileExistsError, RuntimeError) as error:
        print(f"crownq-data: error: {error}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
