"""The pickle-free artifact container: what the 16,000,000-byte budget counts as model bytes.

Layout (all integers little-endian):
    magic    8 bytes  b"CROWNQA\\x00"
    version  uint32   FORMAT_VERSION
    hlen     uint32   length of the compressed header
    hsha     32 bytes sha256 of the compressed header
    header   hlen bytes: raw-LZMA2-compressed UTF-8 JSON (tensor names, shapes, dtypes, bit widths,
             section table with codec specs, payload sha256)
    payload  the compressed sections, back to back
Sections (measured choice, see docs/artifact.md): `int<bits>` holds the integer codes of every
tensor with that bit width as plain int8 bytes, row-major, tensors back to back (split in chunks
that compress in parallel); `scales` holds the per-row fp16 scales and `fp16`/`fp32` the pass-through
tensors, each byte-shuffled (all first bytes, then all second bytes, ...). Loading parses JSON and
copies bytes: nothing in the file is ever executed or unpickled.

Frontier additions (each only present when its switch is on, docs/artifact.md):
- `grouping="pergroup"` (crownq/quant/pergroup.py): codes of role groups go to `grp.<role>` sections,
  written transposed (`"transposed": true`), hot groups row-reordered with the uint16 permutation in the
  `perm` section (`perm_offset`);
- LQER factors (crownq/quant/lqer.py): a tensor's `lqer` entry points at its int8 factor codes in the
  `lqer` section (A then B) and at its fp16 factor scales in `scales` (sA then sB).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from crownq.quant.artifact_checks import (
    HeaderError,
    check_expected_shapes,
    check_raw_lengths,
    check_structure,
)
from crownq.quant.codecs import CodecError, compress_sections, decompress

# LQER and per-group coding are imported where used: a submission bundle carries them only when its
# configuration switches them on (BUNDLE_WHEN in their modules).
if TYPE_CHECKING:
    from crownq.quant.lqer import LQERFactors

MAGIC = b"CROWNQA\x00"
FORMAT_VERSION = 1
PREFIX = struct.Struct("<8sII32s")
MAX_HEADER_BYTES = 16 << 20
STORE_DTYPES = {"fp16": np.float16, "fp32": np.float32}
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                "float64": torch.float64}


class ArtifactError(ValueError):
    """The artifact is damaged, from another format version, or inconsistent with what is expected."""


@dataclass
class QuantTensor:
    q: Tensor  # int8 codes [R, K] in [-qmax, qmax]
    scale: Tensor  # [R]; stored as fp16 (quantisers already choose fp16-exact scales)
    bits: int
    dtype: str = "float32"  # dtype of the dequantised tensor
    lqer: LQERFactors | None = None  # low-rank error repair added on load (quantizer.lqer_rank > 0)

    def dequantize(self) -> Tensor:
        w = self.q.float() * self.scale.half().float().unsqueeze(-1)
        if self.lqer is not None:
            w = w + self.lqer.correction()
        return w.to(TORCH_DTYPES[self.dtype])


@dataclass
class RawTensor:
    value: Tensor
    store: str  # fp16 | fp32
    dtype: str = "float32"

    def dequantize(self) -> Tensor:
        stored = self.value.to(torch.float16 if self.store == "fp16" else torch.float32)
        return stored.to(TORCH_DTYPES[self.dtype])


Entry = QuantTensor | RawTensor


def _shuffle(raw: np.ndarray, itemsize: int) -> bytes:
    return raw.view(np.uint8).reshape(-1, itemsize).T.tobytes()


def _unshuffle(data: bytes, itemsize: int) -> np.ndarray:
    return np.frombuffer(data, np.uint8).reshape(itemsize, -1).T.copy().reshape(-1)


def _pergroup():
    """crownq.quant.pergroup, imported on first use (bundled only when per-group coding is on)."""
    from crownq.quant import pergroup

    return pergroup


GROUPINGS = ("sections", "pergroup")


def layout(entries: dict[str, Entry], chunks: int = 2, grouping: str = "sections",
           perm_cache: dict[str, np.ndarray | None] | None = None) -> tuple[list[dict], dict[str, bytes]]:
    """Tensor table and raw (uncompressed) sections. Integer sections are split into `chunks` parts.

    grouping `pergroup`: codes of role groups go to per-role sections instead (see module docstring);
    `perm_cache` (name -> permutation) keeps the row orders of a first layout for later ones."""
    if grouping not in GROUPINGS:
        raise ValueError(f"quantizer.compressor must be one of {GROUPINGS}, got {grouping!r}")
    meta: list[dict] = []
    ints: dict[int, list[str]] = {}
    groups: dict[str, list[str]] = {}
    floats: dict[str, list[np.ndarray]] = {"scales": [], "fp16": [], "fp32": []}
    float_len = {"scales": 0, "fp16": 0, "fp32": 0}
    lqer_bytes: list[bytes] = []
    lqer_len = 0
    for name, e in entries.items():
        if isinstance(e, QuantTensor):
            role = _pergroup().role_of(name) if grouping == "pergroup" else None
            (groups.setdefault(role, []) if role else ints.setdefault(e.bits, [])).append(name)
            scale = e.scale.detach().cpu().numpy().astype(np.float16)
            meta.append({"name": name, "shape": list(e.q.shape), "dtype": e.dtype, "bits": e.bits,
                         "scale_offset": float_len["scales"]})
            floats["scales"].append(scale)
            float_len["scales"] += scale.size
            if e.lqer is not None:
                f = e.lqer
                meta[-1]["lqer"] = {"rank": f.rank, "mode": f.mode, "group": f.group, "offset": lqer_len,
                                    "scale_offset": float_len["scales"]}
                codes = f.qa.to(torch.int8).numpy().tobytes() + f.qb.to(torch.int8).numpy().tobytes()
                lqer_bytes.append(codes)
                lqer_len += len(codes)
                fscales = np.concatenate([f.sa.numpy().reshape(-1), f.sb.numpy().reshape(-1)])
                fscales = fscales.astype(np.float16)
                floats["scales"].append(fscales)
                float_len["scales"] += fscales.size
        else:
            arr = e.value.detach().cpu().float().numpy().astype(STORE_DTYPES[e.store]).reshape(-1)
            meta.append({"name": name, "shape": list(e.value.shape), "dtype": e.dtype, "store": e.store,
                         "section": e.store, "offset": float_len[e.store]})
            floats[e.store].append(arr)
            float_len[e.store] += arr.size
    sections: dict[str, bytes] = {}
    by_name = {m["name"]: m for m in meta}
    for bits, names in sorted(ints.items()):
        total = sum(entries[n].q.numel() for n in names)
        n_chunks = max(1, min(chunks, len(names)))
        parts: list[list[str]] = [[] for _ in range(n_chunks)]
        done = 0
        for n in names:  # contiguous split at tensor boundaries, balanced by size
            parts[min(n_chunks - 1, done * n_chunks // total)].append(n)
            done += entries[n].q.numel()
        for ci, part in enumerate(p for p in parts if p):
            sec, offset, blobs = f"int{bits}.{ci}", 0, []
            for n in part:
                by_name[n].update(section=sec, offset=offset)
                blobs.append(entries[n].q.detach().cpu().to(torch.int8).numpy().tobytes())
                offset += entries[n].q.numel()
            sections[sec] = b"".join(blobs)
    perms: list[bytes] = []
    perm_len = 0
    cache = perm_cache if perm_cache is not None else {}
    for role, names in groups.items():  # empty unless grouping is "pergroup"
        pergroup, blobs, offset = _pergroup(), [], 0
        for n in names:
            data, perm = pergroup.encode_matrix(entries[n].q.detach().cpu(), role in pergroup.HOT_ROLES,
                                                cache.get(n))
            cache[n] = perm
            by_name[n].update(section=f"grp.{role}", offset=offset, transposed=True)
            if perm is not None:
                by_name[n]["perm_offset"] = perm_len
                perms.append(perm.astype("<u2").tobytes())
                perm_len += perm.size
            blobs.append(data)
            offset += len(data)
        sections[f"grp.{role}"] = b"".join(blobs)
    if perms:
        sections["perm"] = b"".join(perms)
    if lqer_bytes:
        sections["lqer"] = b"".join(lqer_bytes)
    for key, arrs in floats.items():
        if arrs:
            arr = np.concatenate(arrs)
            sections[key] = _shuffle(arr, arr.itemsize)
    return meta, sections


def assemble(meta: list[dict], compressed: dict[str, tuple[dict, bytes, int]]) -> bytes:
    """Container bytes from the tensor table and compressed sections {name: (spec, data, raw_len)}."""
    table, offset = [], 0
    for name, (spec, data, raw_len) in compressed.items():
        table.append({"name": name, "codec": spec, "offset": offset, "length": len(data), "raw_len": raw_len})
        offset += len(data)
    payload = b"".join(data for _, data, _ in compressed.values())
    header = {"tensors": meta, "sections": table, "payload_sha256": hashlib.sha256(payload).hexdigest()}
    text = json.dumps(header, separators=(",", ":")).encode()
    hbytes = lzma.compress(text, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}])
    return PREFIX.pack(MAGIC, FORMAT_VERSION, len(hbytes), hashlib.sha256(hbytes).digest()) + hbytes + payload


def pack(entries: dict[str, Entry], codec: str = "lzma", lzma_preset: int = 6, threads: int = 2,
         grouping: str = "sections") -> bytes:
    meta, raw = layout(entries, chunks=threads, grouping=grouping)
    outs = compress_sections(raw, codec, lzma_preset, threads, grouping == "pergroup")
    return assemble(meta, {k: (spec, data, len(raw[k])) for k, (spec, data) in zip(raw, outs)})


def _read_header(blob: bytes, where: str) -> tuple[dict, bytes]:
    if len(blob) < PREFIX.size:
        raise ArtifactError(f"{where}: truncated: {len(blob)} bytes, shorter than the "
                            f"{PREFIX.size}-byte prefix")
    magic, version, hlen, hsha = PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise ArtifactError(f"{where}: bad magic {magic!r}: not a crownq artifact (expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{where}: unsupported format version {version} "
                            f"(this code reads {FORMAT_VERSION})")
    if hlen > MAX_HEADER_BYTES or PREFIX.size + hlen > len(blob):
        raise ArtifactError(f"{where}: truncated: header of {hlen} bytes does not fit in {len(blob)} bytes")
    hbytes = blob[PREFIX.size:PREFIX.size + hlen]
    if hashlib.sha256(hbytes).digest() != hsha:
        raise ArtifactError(f"{where}: header checksum mismatch (the file is damaged or was modified)")
    try:
        dec = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}])
        header = json.loads(dec.decompress(hbytes, max_length=MAX_HEADER_BYTES * 8))
    except (lzma.LZMAError, ValueError) as exc:
        raise ArtifactError(f"{where}: header is not valid compressed JSON: {exc}") from exc
    if not isinstance(header, dict) or not {"tensors", "sections", "payload_sha256"} <= header.keys():
        raise ArtifactError(f"{where}: header lacks tensors/sections/payload_sha256")
    try:
        check_structure(header)
    except HeaderError as exc:
        raise ArtifactError(f"{where}: {exc}") from exc
    payload = blob[PREFIX.size + hlen:]
    expected = sum(int(s["length"]) for s in header["sections"])
    if len(payload) != expected:
        raise ArtifactError(f"{where}: payload is {len(payload)} bytes, header says {expected} "
                            f"({'truncated' if len(payload) < expected else 'trailing bytes'})")
    if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise ArtifactError(f"{where}: payload checksum mismatch (the file is damaged or was modified)")
    return header, payload


def _numel(shape: object, name: str, where: str) -> int:
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ArtifactError(f"{where}: tensor '{name}' has invalid shape {shape!r}")
    return int(np.prod(shape, dtype=np.int64))


def unpack(blob: bytes, where: str = "artifact",
           expected_shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, Entry]:
    """Parse and validate a container; every inconsistency raises ArtifactError naming the culprit.

    Decoding is bounded: each section's declared raw length must be what its tensors need (with
    `expected_shapes`, the tensors must be the model's) and the codecs stop at that length."""
    header, payload = _read_header(blob, where)
    try:
        if expected_shapes is not None:
            check_expected_shapes(header, expected_shapes)
        check_raw_lengths(header)
    except HeaderError as exc:
        raise ArtifactError(f"{where}: {exc}") from exc
    raw: dict[str, bytes] = {}
    for s in header["sections"]:
        data = payload[s["offset"]:s["offset"] + s["length"]]
        try:
            raw[s["name"]] = decompress(data, s["codec"], int(s["raw_len"]))
        except CodecError as exc:
            raise ArtifactError(f"{where}: section '{s['name']}': {exc}") from exc
    floats = {"fp16": _unshuffle(raw["fp16"], 2).view(np.float16) if "fp16" in raw else None,
              "fp32": _unshuffle(raw["fp32"], 4).view(np.float32) if "fp32" in raw else None,
              "scales": _unshuffle(raw["scales"], 2).view(np.float16) if "scales" in raw else None}
    perms = np.frombuffer(raw["perm"], "<u2") if "perm" in raw else None
    out: dict[str, Entry] = {}
    for m in header["tensors"]:
        name = m.get("name")
        n = _numel(m.get("shape"), name, where)
        if m.get("dtype") not in TORCH_DTYPES:
            raise ArtifactError(f"{where}: tensor '{name}' has unknown dtype {m.get('dtype')!r}")
        src = raw.get(m.get("section")) if "bits" in m else floats.get(m.get("section"))
        if src is None:
            raise ArtifactError(f"{where}: tensor '{name}' points to missing section {m.get('section')!r}")
        off = m.get("offset")
        if not isinstance(off, int) or off < 0 or off + n > len(src):
            raise ArtifactError(f"{where}: tensor '{name}' of shape {m['shape']} does not fit its section "
                                f"'{m['section']}' ({len(src)} values from offset {off})")
        if "bits" in m:
            out[name] = _read_quant(m, n, src, floats["scales"], where, perms, raw.get("lqer"))
        else:
            if m.get("store") not in STORE_DTYPES:
                raise ArtifactError(f"{where}: tensor '{name}' has unknown storage {m.get('store')!r}")
            value = torch.from_numpy(src[off:off + n].astype(np.float32).reshape(m["shape"]))
            out[name] = RawTensor(value, m["store"], m["dtype"])
    return out


def _read_quant(m: dict, n: int, src: bytes, scales: np.ndarray | None, where: str,
                perms: np.ndarray | None = None, lqer_codes: bytes | None = None) -> QuantTensor:
    name, shape, bits = m["name"], m["shape"], m["bits"]
    if len(shape) != 2:
        raise ArtifactError(f"{where}: quantised tensor '{name}' must be 2-D, header says shape {shape}")
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ArtifactError(f"{where}: tensor '{name}' has invalid bit width {bits!r} (expected 2..8)")
    so = m.get("scale_offset")
    if scales is None or not isinstance(so, int) or so < 0 or so + shape[0] > len(scales):
        raise ArtifactError(f"{where}: tensor '{name}' scales (offset {so}, {shape[0]} rows) "
                            "are out of range")
    q = np.frombuffer(src, np.int8, count=n, offset=m["offset"])
    if m.get("transposed"):
        pergroup, perm = _pergroup(), None
        if "perm_offset" in m:
            po = m["perm_offset"]
            if perms is None or po + shape[0] > len(perms):
                raise ArtifactError(f"{where}: tensor '{name}' row order (offset {po}, {shape[0]} rows) is "
                                    "out of range of the 'perm' section")
            perm = perms[po:po + shape[0]].astype(np.int64)
            if not pergroup.check_permutation(perm, shape[0]):
                raise ArtifactError(f"{where}: tensor '{name}' row order is not a permutation of its "
                                    f"{shape[0]} rows")
        q = pergroup.decode_matrix(q, shape, perm)
    else:
        q = q.reshape(shape)
    qmax = (1 << (bits - 1)) - 1
    if n and int(np.abs(q.astype(np.int16)).max()) > qmax:
        raise ArtifactError(f"{where}: tensor '{name}' holds codes outside [-{qmax}, {qmax}] for {bits} bits")
    scale = torch.from_numpy(scales[so:so + shape[0]].astype(np.float32))
    lqer = _read_lqer(m, scales, lqer_codes, where) if "lqer" in m else None
    return QuantTensor(torch.from_numpy(q.copy()), scale, bits, m["dtype"], lqer)


def _read_lqer(m: dict, scales: np.ndarray, codes: bytes | None, where: str) -> LQERFactors:
    """A tensor's LQER factors; the header checks (artifact_checks) already bounded every offset."""
    from crownq.quant.lqer import CODE_RANGES, LQERFactors

    name, (rows, cols), lq = m["name"], m["shape"], m["lqer"]
    r, mode, group = lq["rank"], lq["mode"], lq["group"]
    if codes is None or lq["offset"] + r * (rows + cols) > len(codes):
        raise ArtifactError(f"{where}: tensor '{name}' LQER codes are out of range of the 'lqer' section")
    flat = np.frombuffer(codes, np.int8, count=r * (rows + cols), offset=lq["offset"])
    qa, qb = flat[:rows * r].reshape(rows, r), flat[rows * r:].reshape(r, cols)
    a_lo, a_hi, b_lo, b_hi = CODE_RANGES[mode]
    if qa.size and (qa.min() < a_lo or qa.max() > a_hi) or qb.size and (qb.min() < b_lo or qb.max() > b_hi):
        raise ArtifactError(f"{where}: tensor '{name}' LQER codes are outside the {mode} ranges "
                            f"A [{a_lo}, {a_hi}], B [{b_lo}, {b_hi}]")
    n_a = 1 if mode == "asym" else rows
    n_b = r * cols // group if mode == "asym" else r
    so = lq["scale_offset"]
    if scales is None or so + n_a + n_b > len(scales):
        raise ArtifactError(f"{where}: tensor '{name}' LQER scales (offset {so}, {n_a + n_b} values) are "
                            "out of range")
    fs = scales[so:so + n_a + n_b].astype(np.float32)
    return LQERFactors(torch.from_numpy(qa.copy()), torch.from_numpy(fs[:n_a].copy()),
                       torch.from_numpy(qb.copy()), torch.from_numpy(fs[n_a:].copy()), mode, group)


def read_bytes(blob_or_path) -> tuple[bytes, str]:
    """(bytes, name for error messages) from bytes or a file path."""
    if isinstance(blob_or_path, bytes | bytearray | memoryview):
        return bytes(blob_or_path), "artifact"
    path = str(blob_or_path)
    try:
        with open(path, "rb") as f:
            return f.read(), path
    except OSError as exc:
        raise ArtifactError(f"cannot read artifact file {path}: {exc}") from exc
