"""Per-group layout of integer codes (frontier spec 5.6, `quantizer.compressor: pergroup`).

Codes are grouped by role (token embedding, attention q/k/v/out, MLP fc/proj; layers back to back in
state-dict order) so that each compressed stream sees one statistical source. In the "hot" groups
(embedding, attention q, MLP fc) each matrix's rows are reordered by a greedy L1 nearest-neighbour walk
(start at row 0, always jump to the closest unused row) so similar rows sit together; the permutation
is stored as uint16. Every matrix is then written transposed (column-major), which puts the values of
one input column of neighbouring rows next to each other. What each group is compressed with is
decided in crownq/quant/codecs.py (the smallest of the available back-ends).

Nothing here is trusted on load: crownq/quant/artifact.py checks every stored permutation is one.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import Tensor

# In a submission bundle only when this holds for its configuration (crownq/submit/closure.py).
BUNDLE_WHEN = 'cfg.quantizer.compressor == "pergroup"'

# Group order of the frontier's container; the name patterns are crownq's state-dict names.
ROLE_PATTERNS = (
    ("tok_emb", re.compile(r"^tok_emb\.weight$")),
    ("attn.k", re.compile(r"^blocks\.\d+\.attn\.k_proj\.weight$")),
    ("attn.q", re.compile(r"^blocks\.\d+\.attn\.q_proj\.weight$")),
    ("attn.v", re.compile(r"^blocks\.\d+\.attn\.v_proj\.weight$")),
    ("attn.out", re.compile(r"^blocks\.\d+\.attn\.out_proj\.weight$")),
    ("mlp.fc", re.compile(r"^blocks\.\d+\.mlp\.fc\.weight$")),
    ("mlp.proj", re.compile(r"^blocks\.\d+\.mlp\.proj\.weight$")),
)
HOT_ROLES = ("tok_emb", "attn.q", "mlp.fc")
MAX_PERM_ROWS = 1 << 16  # a uint16 permutation indexes at most 65,536 rows
DIST_CHUNK = 512  # rows of the L1 distance matrix computed at once (memory: chunk x rows x cols)


def role_of(name: str) -> str | None:
    """The group of a quantised tensor, or None (it stays in the remainder)."""
    for role, pattern in ROLE_PATTERNS:
        if pattern.match(name):
            return role
    return None


def greedy_l1_order(q: Tensor) -> np.ndarray:
    """Row order of a [R, K] integer matrix: from row 0, repeatedly the closest unused row (L1).

    Ties go to the lowest row index. The full distance matrix is computed in chunks (cdist in float32
    is exact for these integer sums), then the walk is R argmins over one row of it each.
    """
    if q.ndim != 2:
        raise ValueError(f"row reordering needs a 2-D matrix, got shape {tuple(q.shape)}")
    rows = q.shape[0]
    x = q.float()
    dist = np.empty((rows, rows), dtype=np.float32)
    for r0 in range(0, rows, DIST_CHUNK):
        dist[r0:r0 + DIST_CHUNK] = torch.cdist(x[r0:r0 + DIST_CHUNK], x, p=1).numpy()
    order = np.empty(rows, dtype=np.int64)
    used = np.zeros(rows, dtype=bool)
    cur = 0
    for i in range(rows):
        order[i] = cur
        used[cur] = True
        if i + 1 < rows:
            d = np.where(used, np.inf, dist[cur])
            cur = int(np.argmin(d))
    return order


def encode_matrix(q: Tensor, reorder: bool, perm: np.ndarray | None = None
                  ) -> tuple[bytes, np.ndarray | None]:
    """(column-major int8 bytes of q[perm], perm or None). A given `perm` is reused (pruning re-encodes
    the same tensors: any permutation decodes correctly, so the first one is kept)."""
    if reorder and q.shape[0] <= MAX_PERM_ROWS:
        perm = greedy_l1_order(q) if perm is None else perm
        q = q[torch.from_numpy(perm)]
    else:
        perm = None
    return q.to(torch.int8).T.contiguous().numpy().tobytes(), perm


def check_permutation(perm: np.ndarray, rows: int) -> bool:
    return perm.shape == (rows,) and bool((np.bincount(perm, minlength=rows)[:rows] == 1).all()) and \
        (rows == 0 or int(perm.max()) < rows)


def decode_matrix(data: np.ndarray, shape: list[int], perm: np.ndarray | None) -> np.ndarray:
    """Inverse of encode_matrix: [K * R] int8 (column-major, rows permuted) -> [R, K], original order."""
    rows, cols = shape
    stored = data.reshape(cols, rows).T
    if perm is None:
        return np.ascontiguousarray(stored)
    out = np.empty_like(stored)
    out[perm] = stored
    return out
