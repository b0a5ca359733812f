"""Code bytes: the package source a submission needs to load the artifact and evaluate the model.

Counted (raw bytes of each file; docs/artifact.md explains the choice): the model package, the
artifact reader and its codecs (rANS coder included), the fake-quant module the model imports, the
package __init__ files on the import path, the evaluation package, the tokenizer byte tables behind the bpb
metric, the validation-shard reader, and the arch config schema build_model reads.
"""

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # .../crownq
CODE_PATTERNS = (
    "__init__.py",
    "model/**/*.py",
    "quant/__init__.py",
    "quant/artifact.py",
    "quant/codecs.py",
    "quant/rans.py",
    "quant/fake_quant.py",
    "eval/**/*.py",
    "data/__init__.py",
    "data/byte_tables.py",
    "data/shards.py",
    "config/__init__.py",
    "config/arch.py",
)


def code_files(root: Path = PACKAGE_ROOT) -> list[Path]:
    """The counted files, sorted and without duplicates."""
    files: set[Path] = set()
    for pattern in CODE_PATTERNS:
        files.update(p for p in root.glob(pattern) if p.is_file())
    return sorted(files)


def code_bytes(root: Path = PACKAGE_ROOT) -> int:
    """Total size in bytes of code_files(root)."""
    return sum(p.stat().st_size for p in code_files(root))
