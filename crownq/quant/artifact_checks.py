"""Checks of an artifact header before anything is decoded: every entry has the keys and types the
loader reads, and every section's declared raw length is what its tensors need.

The raw lengths bound decompression (crownq/quant/codecs.py stops at them), so they must be justified
before decoding: a crafted file could otherwise declare gigabytes for a section of a few bytes. With the
model's expected shapes the tensors themselves are bounded by the model; without them, by
MAX_RAW_BYTES.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Far above any 16 MB artifact's content (27M int6 codes are 27 MB raw), far below a memory bomb.
MAX_RAW_BYTES = 1 << 30
SECTION_KEYS = {"name": str, "codec": dict, "offset": int, "length": int, "raw_len": int}
TENSOR_KEYS = {"name": str, "shape": list, "dtype": str, "section": str, "offset": int}
QUANT_KEYS = {"bits": int, "scale_offset": int}
RAW_KEYS = {"store": str}
LQER_KEYS = {"rank": int, "mode": str, "group": int, "offset": int, "scale_offset": int}
FLOAT_ITEMSIZE = {"fp16": 2, "fp32": 4}


class HeaderError(ValueError):
    """The header is inconsistent; artifact.py re-raises it as ArtifactError with the file named."""


def _require(entry: Any, keys: dict[str, type], what: str) -> None:
    if not isinstance(entry, dict):
        raise HeaderError(f"header {what} is {type(entry).__name__}, expected an object")
    for key, kind in keys.items():
        if key not in entry:
            raise HeaderError(f"header {what} lacks key '{key}' (forged or damaged header)")
        value = entry[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise HeaderError(f"header {what} key '{key}' is {value!r}, expected {kind.__name__}")


def check_structure(header: dict) -> None:
    """Every section and tensor entry has the keys the loader reads, with the right types."""
    for key in ("sections", "tensors"):
        if not isinstance(header.get(key), list):
            raise HeaderError(f"header '{key}' is not a list")
    for i, s in enumerate(header["sections"]):
        _require(s, SECTION_KEYS, f"sections[{i}]")
        if s["offset"] < 0 or s["length"] < 0 or s["raw_len"] < 0:
            raise HeaderError(f"header sections[{i}] ('{s['name']}') has a negative offset or length")
    for i, t in enumerate(header["tensors"]):
        _require(t, TENSOR_KEYS, f"tensors[{i}]")
        _require(t, QUANT_KEYS if "bits" in t else RAW_KEYS, f"tensors[{i}] ('{t['name']}')")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in t["shape"]):
            raise HeaderError(f"header tensors[{i}] ('{t['name']}') has invalid shape {t['shape']!r}")
        if "bits" in t:
            _check_frontier_keys(t, f"tensors[{i}] ('{t['name']}')")


def _check_frontier_keys(t: dict, what: str) -> None:
    """The optional keys of per-group layout and LQER (crownq/quant/artifact.py) have the right types."""
    if "transposed" in t and not isinstance(t["transposed"], bool):
        raise HeaderError(f"header {what} key 'transposed' is {t['transposed']!r}, expected a bool")
    if ("perm_offset" in t or t.get("transposed")) and len(t["shape"]) != 2:
        raise HeaderError(f"header {what}: a transposed / reordered tensor must be 2-D, shape {t['shape']}")
    if "perm_offset" in t:
        if not t.get("transposed"):
            raise HeaderError(f"header {what} has a row order but is not transposed")
        _require(t, {"perm_offset": int}, what)
        if t["perm_offset"] < 0:
            raise HeaderError(f"header {what} has a negative perm_offset")
    if "lqer" in t:
        lq = t["lqer"]
        _require(lq, LQER_KEYS, f"{what} lqer")
        if len(t["shape"]) != 2:
            raise HeaderError(f"header {what}: LQER needs a 2-D tensor, shape {t['shape']}")
        rows, cols = t["shape"]
        if lq["mode"] not in ("asym", "sym") or not 1 <= lq["rank"] <= min(rows, cols) or \
                lq["offset"] < 0 or lq["scale_offset"] < 0:
            raise HeaderError(f"header {what} lqer {lq!r}: expected mode asym|sym, 1 <= rank <= "
                              f"{min(rows, cols)}, non-negative offsets")
        if lq["mode"] == "asym" and (lq["group"] < 1 or (lq["rank"] * cols) % lq["group"]):
            raise HeaderError(f"header {what} lqer group {lq['group']} does not divide B's "
                              f"{lq['rank'] * cols} values")


def lqer_scale_count(t: dict) -> int:
    """fp16 scales of a tensor's LQER factors: sA then sB."""
    lq, (rows, cols) = t["lqer"], t["shape"]
    if lq["mode"] == "asym":
        return 1 + lq["rank"] * cols // lq["group"]
    return rows + lq["rank"]


def check_expected_shapes(header: dict, expected: dict[str, tuple[int, ...]]) -> None:
    """The header's tensors are the model's, with the model's shapes (so sizes are the model's)."""
    declared = {t["name"]: tuple(t["shape"]) for t in header["tensors"]}
    missing, extra = sorted(set(expected) - set(declared)), sorted(set(declared) - set(expected))
    if missing or extra:
        raise HeaderError(f"tensors do not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, shape in expected.items():
        if declared[name] != tuple(shape):
            raise HeaderError(f"tensor '{name}' has shape {declared[name]}, the model expects {tuple(shape)}")


def needed_raw_bytes(header: dict) -> dict[str, int]:
    """Bytes each section must decode to for its tensors: the furthest value any tensor reads."""
    need: dict[str, int] = {}

    def reach(section: str, end_bytes: int) -> None:
        need[section] = max(need.get(section, 0), end_bytes)

    for t in header["tensors"]:
        n = int(np.prod(t["shape"], dtype=np.int64))
        if "bits" in t:
            reach(t["section"], (t["offset"] + n) * 1)  # int8 codes
            if len(t["shape"]) >= 1:
                reach("scales", (t["scale_offset"] + t["shape"][0]) * 2)  # one fp16 scale per row
            if "perm_offset" in t:
                reach("perm", (t["perm_offset"] + t["shape"][0]) * 2)  # one uint16 per row
            if "lqer" in t:
                rows, cols = t["shape"]
                lq = t["lqer"]
                reach("lqer", lq["offset"] + lq["rank"] * (rows + cols))  # int8 A then B
                reach("scales", (lq["scale_offset"] + lqer_scale_count(t)) * 2)
        else:
            reach(t["section"], (t["offset"] + n) * FLOAT_ITEMSIZE.get(t["section"], 4))
    return need


def check_raw_lengths(header: dict) -> None:
    """Refuse a section declaring more raw bytes than its tensors need, or a total above MAX_RAW_BYTES."""
    need = needed_raw_bytes(header)
    total = 0
    for s in header["sections"]:
        wanted = need.get(s["name"], 0)
        if s["raw_len"] > wanted:
            raise HeaderError(f"section '{s['name']}' declares {s['raw_len']:,} raw bytes but its tensors "
                              f"need {wanted:,}: refused before decoding (forged or damaged header)")
        total += s["raw_len"]
    if total > MAX_RAW_BYTES:
        raise HeaderError(f"the sections declare {total:,} raw bytes in all, above the "
                          f"{MAX_RAW_BYTES:,}-byte limit of any artifact crownq writes: refused before "
                          "decoding")
