"""General-purpose codecs for artifact sections, each described by a small JSON-able spec.

`rans` is the project's own entropy coder (crownq/quant/rans.py), meant for the integer sections.
A spec ({"codec": "lzma", "preset": 6} ...) is stored in the artifact header so the loader knows how
to decode a section; `best` tries every codec and keeps the smallest output.
"""

import lzma
import struct
from concurrent.futures import ThreadPoolExecutor

import brotli
import zstandard

from crownq.quant import rans

CODECS = ("lzma", "brotli", "zstd", "rans")
CODEC_CHOICES = CODECS + ("best",)


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
    raise CodecError(f"quantizer.codec must be one of {', '.join(CODEC_CHOICES)}, got {codec!r}")


def _lzma_filters(spec: dict) -> list[dict]:
    # Raw LZMA2 (no .xz container): the stream header and index would only add bytes to the budget.
    return [{"id": lzma.FILTER_LZMA2, "preset": int(spec.get("preset", 6))}]


def compress(data: bytes, spec: dict) -> bytes:
    name = spec.get("codec")
    if name == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_lzma_filters(spec))
    if name == "brotli":
        return brotli.compress(data, quality=int(spec["quality"]), lgwin=int(spec["lgwin"]))
    if name == "zstd":
        return zstandard.ZstdCompressor(level=int(spec["level"])).compress(data)
    if name == "rans":
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
        elif name == "zstd":
            out = _zstd_bounded(data, limit)
        elif name == "rans":
            out = rans.decode(data, raw_len)
        else:
            raise CodecError(f"unknown codec spec {spec!r} (expected codec in {CODECS})")
    except (lzma.LZMAError, brotli.error, zstandard.ZstdError, ValueError, IndexError, struct.error) as exc:
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
    outs = [(spec, compress(data, spec)) for spec in candidates]
    return min(outs, key=lambda so: len(so[1]))


def compress_sections(sections: dict[str, bytes], codec: str, lzma_preset: int = 6, threads: int = 2
                      ) -> list[tuple[dict, bytes]]:
    """Compress independent sections in parallel: lzma, brotli and zstd all release the GIL.

    Sections named int* hold integer codes; the others (scales, fp16/fp32) never use rANS.
    """
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(lambda kv: compress_section(kv[1], codec, lzma_preset, kv[0].startswith("int")),
                             sections.items()))
