"""General-purpose codecs for artifact sections, each described by a small JSON-able spec.

`rans` is the project's own entropy coder (crownq/quant/rans.py), meant for the integer sections.
A spec ({"codec": "lzma", "preset": 6} ...) is stored in the artifact header so the loader knows how
to decode a section; `best` tries every codec and keeps the smallest output.

`brotli_shuffle` (the frontier's earlier records): bytes de-interleaved by position mod `stride` (2:
all even-offset bytes, then all odd) before brotli quality 11. `lrzip` (ZPAQ back-end, level 9) is the
frontier's per-group coder; it is used only where the `lrzip` binary is installed, and is one of the
back-ends `pergroup_specs()` offers (the smallest wins per group).
"""

import lzma
import os
import shutil
import struct
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import brotli
import numpy as np
import zstandard

CODECS = ("lzma", "brotli", "zstd", "rans", "brotli_shuffle")
CODEC_CHOICES = CODECS + ("best",)
SHUFFLE_STRIDE = 2
LRZIP_TIMEOUT_S = 600


class CodecError(ValueError):
    """A section cannot be encoded or decoded with the codec its spec names."""


def codec_spec(codec: str, lzma_preset: int = 6) -> dict:
    """The spec for a configured codec name (quantizer.codec)."""
    if codec == "lzma":
        if not 0 <= lzma_preset <= 9:
            raise CodecError(f"quantizer.lzma_preset must be in 0..9, got {lzma_preset}")
        return {"codec": "lzma", "preset": lzma_preset}
    if codec == "brotli":
        return {"codec": "brotli", "quality": 11, "lgwin": 24}
    if codec == "zstd":
        return {"codec": "zstd", "level": 22}
    if codec == "rans":
        return {"codec": "rans"}
    if codec == "brotli_shuffle":
        return {"codec": "brotli_shuffle", "stride": SHUFFLE_STRIDE, "quality": 11, "lgwin": 24}
    raise CodecError(f"quantizer.codec must be one of {', '.join(CODEC_CHOICES)}, got {codec!r}")


def _lzma_filters(spec: dict) -> list[dict]:
    # Raw LZMA2 (no .xz container): the stream header and index would only add bytes to the budget.
    return [{"id": lzma.FILTER_LZMA2, "preset": int(spec.get("preset", 6))}]


def byte_shuffle(data: bytes, stride: int) -> bytes:
    """Bytes at positions = 0 mod stride first, then = 1, ... (any length; the last group may be short)."""
    arr = np.frombuffer(data, np.uint8)
    return b"".join(arr[i::stride].tobytes() for i in range(stride))


def byte_unshuffle(data: bytes, stride: int) -> bytes:
    arr = np.frombuffer(data, np.uint8)
    out = np.empty_like(arr)
    start = 0
    for i in range(stride):
        n = len(range(i, len(arr), stride))
        out[i::stride] = arr[start:start + n]
        start += n
    return out.tobytes()


def _stride(spec: dict) -> int:
    stride = spec.get("stride")
    if not isinstance(stride, int) or not 1 <= stride <= 16:
        raise CodecError(f"brotli_shuffle spec needs a stride in 1..16, got {stride!r}")
    return stride


def lrzip_available() -> bool:
    """The lrzip binary is on PATH and not switched off with CROWNQ_LRZIP=off (compressing with ZPAQ level 9
    takes minutes per group on a few CPU cores; decoding an lrzip section still needs the binary)."""
    return shutil.which("lrzip") is not None and os.environ.get("CROWNQ_LRZIP", "").lower() != "off"


def _lrzip(data: bytes, args: list[str], limit: int | None = None) -> bytes:
    """Run the lrzip binary on a temporary file (it works on files, not pipes, for ZPAQ)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in"), os.path.join(tmp, "out")
        with open(src, "wb") as f:
            f.write(data)
        what = "decompress" if "-d" in args else f"compress {len(data):,} bytes"
        try:
            subprocess.run(["lrzip", "-q", "-f", *args, "-o", dst, src], check=True, capture_output=True,
                           timeout=LRZIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise CodecError(f"lrzip did not {what} within {LRZIP_TIMEOUT_S} s (ZPAQ level 9 is slow on few "
                             "CPU cores); run the export on more cores, or set CROWNQ_LRZIP=off to compress "
                             "the per-group streams with brotli/lzma/rANS only") from None
        except subprocess.CalledProcessError as exc:
            err = exc.stderr.decode(errors="replace").strip().splitlines()[-1:] if exc.stderr else []
            raise CodecError(f"lrzip failed to {what} (exit {exc.returncode}{': ' + err[0] if err else ''})"
                             ) from None
        if limit is not None and os.path.getsize(dst) > limit:
            raise CodecError(f"lrzip section decodes to more than the header's {limit - 1} bytes (forged "
                             "or damaged file)")
        with open(dst, "rb") as f:
            return f.read()


def compress(data: bytes, spec: dict) -> bytes:
    name = spec.get("codec")
    if name == "brotli_shuffle":
        return brotli.compress(byte_shuffle(data, _stride(spec)), quality=int(spec["quality"]),
                               lgwin=int(spec["lgwin"]))
    if name == "lrzip":
        return _lrzip(data, ["-z", "-L", str(int(spec.get("level", 9)))])
    if name == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_lzma_filters(spec))
    if name == "brotli":
        return brotli.compress(data, quality=int(spec["quality"]), lgwin=int(spec["lgwin"]))
    if name == "zstd":
        return zstandard.ZstdCompressor(level=int(spec["level"])).compress(data)
    if name == "rans":
        from crownq.quant import rans  # bundled only when a config can pick it

        return rans.encode(data)
    raise CodecError(f"unknown codec spec {spec!r} (expected codec in {CODECS})")


def _lzma_bounded(data: bytes, spec: dict, limit: int) -> bytes:
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_lzma_filters(spec))
    return dec.decompress(data, max_length=limit)


def _brotli_bounded(data: bytes, limit: int) -> bytes:
    dec = brotli.Decompressor()
    out = bytearray(dec.process(data, output_buffer_limit=limit))
    while not dec.is_finished() and len(out) < limit:
        more = dec.process(b"", output_buffer_limit=limit - len(out))
        if not more:
            break  # truncated input: the length check below names it
        out += more
    return bytes(out)


def _zstd_bounded(data: bytes, limit: int) -> bytes:
    # A streaming read: the frame's own content-size field is never trusted for an allocation.
    reader = zstandard.ZstdDecompressor().stream_reader(data)
    out = bytearray()
    while len(out) < limit:
        chunk = reader.read(min(limit - len(out), 1 << 20))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def decompress(data: bytes, spec: dict, raw_len: int) -> bytes:
    """Decode a section and check it has the recorded length (a wrong length means a damaged file).

    Decoding is incremental and stops one byte past `raw_len`: a section that would decode to more
    is refused without ever holding more than raw_len + 1 bytes (no decompression bomb)."""
    name = spec.get("codec")
    limit = raw_len + 1
    try:
        if name == "lzma":
            out = _lzma_bounded(data, spec, limit)
        elif name == "brotli":
            out = _brotli_bounded(data, limit)
        elif name == "brotli_shuffle":
            out = _brotli_bounded(data, limit)
            if len(out) == raw_len:  # else the length checks below name the problem
                out = byte_unshuffle(out, _stride(spec))
        elif name == "lrzip":
            if not lrzip_available():
                raise CodecError("section is lrzip-compressed but the lrzip binary is not installed")
            out = _lrzip(data, ["-d"], limit)
        elif name == "zstd":
            out = _zstd_bounded(data, limit)
        elif name == "rans":
            from crownq.quant import rans

            out = rans.decode(data, raw_len)
        else:
            raise CodecError(f"unknown codec spec {spec!r} (expected codec in {CODECS})")
    except (lzma.LZMAError, brotli.error, zstandard.ZstdError, ValueError, IndexError, struct.error,
            OSError, subprocess.SubprocessError) as exc:
        raise CodecError(f"{name} could not decode the section: {exc}") from exc
    if len(out) > raw_len:
        raise CodecError(f"{name} section decodes to more bytes than the header says {raw_len}; decoding "
                         "stopped there (forged or damaged file)")
    if len(out) != raw_len:
        raise CodecError(f"{name} section decoded to {len(out)} bytes, header says {raw_len}")
    return out


def compress_section(data: bytes, codec: str, lzma_preset: int = 6, is_int_section: bool = True
                     ) -> tuple[dict, bytes]:
    """(spec, compressed bytes) for one section; codec `best` keeps the smallest of all codecs."""
    if codec == "rans" and not is_int_section:
        codec = "lzma"  # rANS codes byte symbols: right for integer codes, wrong for float bytes
    if codec != "best":
        spec = codec_spec(codec, lzma_preset)
        return spec, compress(data, spec)
    candidates = [codec_spec(c, lzma_preset) for c in CODECS]
    return smallest(data, candidates)


def smallest(data: bytes, specs: list[dict]) -> tuple[dict, bytes]:
    """(spec, bytes) of the spec that compresses `data` smallest (ties: the earlier spec)."""
    outs = [(spec, compress(data, spec)) for spec in specs]
    return min(outs, key=lambda so: len(so[1]))


def pergroup_specs() -> list[dict]:
    """Back-ends tried on each per-group stream: lrzip/ZPAQ where installed, brotli-11, lzma-9, rANS."""
    specs = [{"codec": "lrzip", "level": 9}] if lrzip_available() else []
    return specs + [codec_spec("brotli"), codec_spec("lzma", 9), codec_spec("rans")]


def compress_sections(sections: dict[str, bytes], codec: str, lzma_preset: int = 6, threads: int = 2,
                      pergroup: bool = False) -> list[tuple[dict, bytes]]:
    """Compress independent sections in parallel: lzma, brotli and zstd all release the GIL.

    Sections named int* hold integer codes; the others (scales, fp16/fp32) never use rANS. With
    `pergroup`, each role-group section (grp.*) gets the smallest of pergroup_specs(); the others
    (the frontier's "remainder") keep `codec`.
    """
    specs = pergroup_specs() if pergroup else []

    def one(kv: tuple[str, bytes]) -> tuple[dict, bytes]:
        if pergroup and kv[0].startswith("grp."):
            return smallest(kv[1], specs)
        return compress_section(kv[1], codec, lzma_preset, kv[0].startswith("int"))

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(one, sections.items()))
