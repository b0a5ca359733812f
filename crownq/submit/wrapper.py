"""The two-line self-extracting form of a bundle program (how later records count code bytes).

Standard library only (brotli when present), and apart from crownq.submit.bundle, so a bundled run can
measure its own compressed size without carrying the bundle builder.
"""

from __future__ import annotations

import base64
import lzma


def wrap(program: bytes) -> bytes:
    """The two-line self-extracting file for `program`: the smaller of lzma and brotli, base85."""
    candidates = [(b"lzma", lzma.compress(program, format=lzma.FORMAT_ALONE,
                                          preset=9 | lzma.PRESET_EXTREME))]
    try:
        import brotli

        candidates.append((b"brotli", brotli.compress(program, quality=11)))
    except ImportError:  # brotli is optional here; lzma alone is still a valid, deterministic count
        pass
    codec, packed = min(candidates, key=lambda c: (len(c[1]), c[0]))
    return (b"import " + codec + b",base64\nexec(_SRC:=" + codec + b".decompress(base64.b85decode(b\""
            + base64.b85encode(packed) + b"\")))\n")
