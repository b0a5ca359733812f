"""Code bytes: the size of the single file a submission ships for this run's configuration.

That file is the bundle crownq-submit writes as train_gpt.py (crownq/submit/bundle.py): exactly the
modules the recipe imports plus the frozen configuration, counted raw or compressed as
`quantizer.code_bytes_mode` says. The same number feeds the pruning target, result.json and the
report. Inside a running bundle the file measures itself, so a bundled run prunes to the same target
and reports the same code bytes as the run it reproduces.

crownq.submit.bundle and crownq.submit.strip import only the standard library (and brotli), so this
foundation module depends on no stage above it.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CodeSize:
    bytes: int
    sha256: str  # of the counted file: ties a result to the exact code that produced it
    mode: str
    program_bytes: int = 0  # the program the counted file runs, before compression (= bytes when raw)


def running_bundle():
    """The importer of the bundled train_gpt.py this process runs, or None in the installed package."""
    return next((f for f in sys.meta_path if getattr(f, "crownq_bundle", False)), None)


def _counted(file: bytes, mode: str, program: bytes | None = None) -> CodeSize:
    program_bytes = len(file if program is None else program)
    return CodeSize(len(file), hashlib.sha256(file).hexdigest(), mode, program_bytes)


def code_size(cfg) -> CodeSize:
    """Code bytes of the run config `cfg` (the whole config: its resolved values are frozen into the
    bundle, so they count too)."""
    mode = cfg.quantizer.code_bytes_mode
    bundle = running_bundle()
    if bundle is not None:
        return _measure_running(bundle, mode)
    from crownq.results import digest_payload
    from crownq.submit.bundle import build_bundle

    built = build_bundle(digest_payload(cfg), mode)
    return _counted(built.file, mode, built.program)


def code_bytes(cfg) -> int:
    return code_size(cfg).bytes


def _measure_running(bundle, mode: str) -> CodeSize:
    if bundle.mode != mode:
        raise ValueError(f"quantizer.code_bytes_mode={mode!r} but this bundle was built for {bundle.mode!r}")
    script = Path(bundle.script).read_bytes()
    if mode == "raw" or bundle.text is not None:
        # Raw: the file is the program. Compressed and started through the wrapper: the file is the wrapper.
        return _counted(script, mode, bundle.text if mode != "raw" else None)
    from crownq.submit.wrapper import wrap

    # The readable program of a compressed bundle run directly: count the wrapper it compresses to.
    return _counted(wrap(script), mode, script)
