"""Container roundtrip and every kind of damaged artifact."""

import hashlib
import json
import lzma
import struct

import pytest
import torch

from crownq.quant.artifact import (
    FORMAT_VERSION,
    MAGIC,
    PREFIX,
    ArtifactError,
    QuantTensor,
    RawTensor,
    pack,
    unpack,
)
from crownq.quant.codecs import CODEC_CHOICES, CodecError, codec_spec, compress, decompress
from crownq.quant.export import load_artifact


def _entries(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    q6 = torch.randint(-31, 32, (48, 40), generator=g, dtype=torch.int8)
    q8 = torch.randint(-127, 128, (30, 16), generator=g, dtype=torch.int8)
    return {
        "blocks.0.attn.q.weight": QuantTensor(q6, torch.rand(48, generator=g) * 0.1 + 0.01, 6),
        "blocks.0.mlp.fc.weight": QuantTensor(q6[:20].clone(), torch.rand(20, generator=g), 6),
        "tok_emb.weight": QuantTensor(q8, torch.rand(30, generator=g) * 0.01, 8, "bfloat16"),
        "small.weight": RawTensor(torch.randn(4, 5, generator=g), "fp16"),
        "scale": RawTensor(torch.randn(7, generator=g), "fp32"),
        "gain": RawTensor(torch.tensor(1.2345678), "fp32"),
    }


@pytest.mark.parametrize("codec", CODEC_CHOICES)
def test_pack_unpack_dequantise_is_exact(codec):
    entries = _entries()
    got = unpack(pack(entries, codec=codec, lzma_preset=1))
    assert list(got) == list(entries)
    for name, e in entries.items():
        assert torch.equal(got[name].dequantize(), e.dequantize()), name
        assert got[name].dequantize().dtype == e.dequantize().dtype
    assert torch.equal(got["gain"].value, torch.tensor(1.2345678))  # fp32 kept exactly
    assert torch.equal(got["small.weight"].value, entries["small.weight"].value.half().float())


def test_load_artifact_from_path_and_shape_check(tmp_path):
    entries = _entries()
    path = tmp_path / "a.ptz"
    path.write_bytes(pack(entries, lzma_preset=1))
    sd = load_artifact(path, {n: tuple(e.dequantize().shape) for n, e in entries.items()})
    assert torch.equal(sd["tok_emb.weight"], entries["tok_emb.weight"].dequantize())
    bad = {n: tuple(e.dequantize().shape) for n, e in entries.items()} | {"scale": (8,)}
    with pytest.raises(ArtifactError, match=r"tensor 'scale' has shape \(7,\), the model expects \(8,\)"):
        load_artifact(path, bad)
    with pytest.raises(ArtifactError, match=r"missing \['extra'\]"):
        load_artifact(path, bad | {"extra": (1,)})
    with pytest.raises(ArtifactError, match="cannot read artifact file"):
        load_artifact(tmp_path / "nope.ptz")


def _resign(blob: bytes, edit) -> bytes:
    """Rewrite the header with edit(header) and recompute both checksums: a consistent but wrong file."""
    _, version, hlen, _ = PREFIX.unpack_from(blob)
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9}]
    header = json.loads(lzma.decompress(blob[PREFIX.size:PREFIX.size + hlen], lzma.FORMAT_RAW, None, filters))
    edit(header)
    hb = lzma.compress(json.dumps(header).encode(), lzma.FORMAT_RAW, filters=filters)
    return PREFIX.pack(MAGIC, version, len(hb), hashlib.sha256(hb).digest()) + hb + blob[PREFIX.size + hlen:]


def test_corrupted_artifacts_fail_with_clear_errors():
    blob = pack(_entries(), lzma_preset=1)
    unpack(_resign(blob, lambda h: None))  # the re-signing helper itself yields a valid file
    cases = {
        "bad magic": (b"PK\x03\x04" + blob[4:], "bad magic"),
        "wrong version": (blob[:8] + struct.pack("<I", FORMAT_VERSION + 1) + blob[12:],
                          f"unsupported format version {FORMAT_VERSION + 1}"),
        "truncated prefix": (blob[:20], "truncated"),
        "truncated header": (blob[:PREFIX.size + 3], "truncated"),
        "truncated payload": (blob[:-1], r"payload is \d+ bytes, header says \d+ \(truncated\)"),
        "trailing bytes": (blob + b"\0", "trailing bytes"),
        "header byte flipped": (blob[:PREFIX.size + 2] + bytes([blob[PREFIX.size + 2] ^ 1])
                                + blob[PREFIX.size + 3:], "header checksum mismatch"),
        "payload byte flipped": (blob[:-5] + bytes([blob[-5] ^ 0x40]) + blob[-4:],
                                 "payload checksum mismatch"),
        "wrong shape": (_resign(blob, lambda h: h["tensors"][0].update(shape=[4800, 40])),
                        r"tensor 'blocks.0.attn.q.weight' of shape \[4800, 40\] does not fit"),
        "negative dim": (_resign(blob, lambda h: h["tensors"][3].update(shape=[-4, 5])), "invalid shape"),
        "bad bits": (_resign(blob, lambda h: h["tensors"][0].update(bits=5)), r"outside \[-15, 15\]"),
        "bad dtype": (_resign(blob, lambda h: h["tensors"][4].update(dtype="object")),
                      "unknown dtype 'object'"),
        "missing section": (_resign(blob, lambda h: h["tensors"][4].update(section="fp64")),
                            "missing section 'fp64'"),
        "raw length": (_resign(blob, lambda h: h["sections"][0].update(raw_len=5)), "header says 5"),
        "unknown codec": (_resign(blob, lambda h: h["sections"][0].update(codec={"codec": "zip"})),
                          "unknown codec"),
    }
    for label, (bad, message) in cases.items():
        with pytest.raises(ArtifactError, match=message):
            unpack(bad)
        assert label


def test_every_single_byte_flip_is_detected():
    blob = pack(_entries(1), lzma_preset=1)
    for pos in range(0, len(blob), max(1, len(blob) // 97)):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(ArtifactError):
            unpack(bytes(bad))


@pytest.mark.parametrize("codec", ["lzma", "brotli", "zstd", "rans"])
def test_codecs_roundtrip_and_reject_garbage(codec):
    data = bytes(range(256)) * 50
    spec = codec_spec(codec, 2)
    assert decompress(compress(data, spec), spec, len(data)) == data
    with pytest.raises(CodecError, match="header says 3|holds 12800 symbols, expected 3"):
        decompress(compress(data, spec), spec, 3)
    with pytest.raises(CodecError, match=f"{codec} (could not decode|section decoded to 0 bytes)"):
        decompress(b"\x00garbage" * 3, spec, len(data))


def test_codec_config_errors_name_the_field():
    with pytest.raises(CodecError, match="quantizer.codec must be one of"):
        codec_spec("gzip")
    with pytest.raises(CodecError, match="quantizer.lzma_preset must be in 0..9, got 12"):
        codec_spec("lzma", 12)


def test_rans_matches_entropy_and_roundtrips_edge_cases():
    import numpy as np

    from crownq.quant import rans

    g = torch.Generator().manual_seed(3)
    codes = torch.distributions.Laplace(0.0, 6.0).sample((600_000,)).round().clamp(-31, 31).to(torch.int8)
    data = codes.numpy().tobytes()
    counts = np.bincount(codes.numpy().astype(np.int64) + 128)
    p = counts[counts > 0] / counts.sum()
    entropy_bytes = -(counts[counts > 0] * np.log2(p)).sum() / 8
    enc = rans.encode(data)
    assert rans.decode(enc, len(data)) == data
    # Overhead: lane states (8 KiB) + one table per 2^20 symbols + table quantisation.
    assert entropy_bytes < len(enc) < entropy_bytes * 1.003 + 4 * rans.LANES + 200
    for edge in (b"", b"\x07", bytes([0]) * 5000, bytes(range(256)) * 9, bytes([200]) * (1 << 20) + b"\x01"):
        assert rans.decode(rans.encode(edge), len(edge)) == edge
    assert g is not None
