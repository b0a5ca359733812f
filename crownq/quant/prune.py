"""Selective +/-1 pruning: zero the cheapest +/-1 codes until the compressed artifact fits its target.

Cost of zeroing code q[r, c] = +/-1 is scale[r]^2 * H[c, c] (the loss increase GPTQ's quadratic model
predicts for a one-step change; H = 1 where no Hessian is given). The record ranks by scale[r]^2 alone
(`quantizer.prune_cost: scale`, export passes no Hessian diagonals); `scale_hdiag` passes them. Values
are pruned in ascending cost (ties in tensor order, then row-major, as the record's stable sort), always
a prefix of that order, so the kept set is "everything costlier than a threshold".

Speed: instead of re-compressing at every bisection step, the compressed size of each section is
modelled as ratio * (zeroth-order entropy of its tensors' codes), with the ratio calibrated by the
real compression that showed the artifact was too large. Pruning k values only moves counts from the
+/-1 bins to 0, so the entropy for any k comes from histograms in microseconds. One real compression
confirms the choice; if the model was optimistic, the ratio is re-calibrated and the search repeats.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from crownq.progress import Progress
from crownq.quant.artifact import QuantTensor

MAX_ROUNDS = 6
PRUNE_COSTS = ("scale", "scale_hdiag")


class PruneError(ValueError):
    """The artifact cannot be made to fit its target by +/-1 pruning."""


@dataclass
class Candidates:
    names: list[str]
    tensor_id: np.ndarray  # int32 [M], sorted by cost
    flat_index: np.ndarray  # int64 [M] into q.view(-1)
    positive: np.ndarray  # bool [M]: the code is +1 (else -1)
    cost: np.ndarray  # float64 [M], ascending


def prune_candidates(tensors: dict[str, QuantTensor], hdiag: dict[str, Tensor | None]) -> Candidates:
    names = list(tensors)
    ids, idx, pos, cost = [], [], [], []
    for i, name in enumerate(names):
        t = tensors[name]
        q = t.q.reshape(t.q.shape[0], -1)
        flat = torch.nonzero(q.reshape(-1).abs() == 1).squeeze(1)
        rows, cols = flat // q.shape[1], flat % q.shape[1]
        h = hdiag.get(name)
        hc = h.double()[cols] if h is not None else torch.ones(len(flat), dtype=torch.float64)
        ids.append(np.full(len(flat), i, np.int32))
        idx.append(flat.numpy())
        pos.append((q.reshape(-1)[flat] > 0).numpy())
        cost.append((t.scale.double()[rows].square() * hc).numpy())
    cost_all = np.concatenate(cost) if cost else np.zeros(0)
    order = np.argsort(cost_all, kind="stable")
    cat = lambda xs, dt: np.concatenate(xs)[order] if xs else np.zeros(0, dt)  # noqa: E731
    return Candidates(names, cat(ids, np.int32), cat(idx, np.int64), cat(pos, bool), cost_all[order])


def _entropy_bytes(counts: np.ndarray) -> np.ndarray:
    """Zeroth-order entropy in bytes of each row of a [T, 256] histogram."""
    n = counts.sum(1, keepdims=True)
    p = np.where(counts > 0, counts / np.maximum(n, 1), 1.0)
    return -(counts * np.log2(p)).sum(1) / 8.0


class SizeModel:
    """Compressed bytes as a function of how many of the cheapest candidates are pruned."""

    def __init__(self, tensors: dict[str, QuantTensor], cand: Candidates, section_of: dict[str, str]):
        self.cand = cand
        self.counts = np.stack([np.bincount(tensors[n].q.reshape(-1).numpy().astype(np.int64) + 128,
                                            minlength=256) for n in cand.names]).astype(np.float64)
        secs = sorted({section_of[n] for n in cand.names})
        self.sections = secs
        self.sec_of_tensor = np.array([secs.index(section_of[n]) for n in cand.names])
        self.ratio = np.ones(len(secs))
        self.fixed = 0.0

    def section_entropy(self, k: int) -> np.ndarray:
        c = self.counts.copy()
        t, p = self.cand.tensor_id[:k], self.cand.positive[:k]
        n_t = len(self.cand.names)
        plus = np.bincount(t[p], minlength=n_t)
        minus = np.bincount(t[~p], minlength=n_t)
        c[:, 129] -= plus
        c[:, 127] -= minus
        c[:, 128] += plus + minus
        return np.bincount(self.sec_of_tensor, weights=_entropy_bytes(c), minlength=len(self.sections))

    def calibrate(self, k: int, total: int, section_bytes: dict[str, int]) -> None:
        ent = self.section_entropy(k)
        real = np.array([section_bytes[s] for s in self.sections], dtype=np.float64)
        self.ratio = real / np.maximum(ent, 1.0)
        self.fixed = total - real.sum()

    def estimate(self, k: int) -> float:
        return self.fixed + float((self.ratio * self.section_entropy(k)).sum())

    def smallest_k(self, target: float, lo: int) -> int:
        """Smallest k >= lo with estimate(k) <= target (bisection; estimate falls as k grows)."""
        hi = len(self.cand.cost)
        if self.estimate(hi) > target:
            return hi
        while lo < hi:
            mid = (lo + hi) // 2
            if self.estimate(mid) <= target:
                hi = mid
            else:
                lo = mid + 1
        return lo


@dataclass
class PruneReport:
    pruned: int
    total_bytes: int
    compressions: int
    threshold_cost: float


def prune_to_fit(tensors: dict[str, QuantTensor], hdiag: dict[str, Tensor | None], section_of: dict[str, str],
                 measure: Callable[[], tuple[bytes, dict[str, int]]], target: int,
                 first: tuple[bytes, dict[str, int]]) -> tuple[bytes, PruneReport]:
    """Zero the cheapest +/-1 codes of `tensors` (in place) until measure() says the blob fits `target`.

    `first` is the measurement of the unpruned tensors; `measure()` re-compresses the current ones and
    returns (blob, compressed bytes per section). Returns the fitting blob, never one over target.
    """
    blob, sec_bytes = first
    if len(blob) <= target:
        return blob, PruneReport(0, len(blob), 0, 0.0)
    cand = prune_candidates(tensors, hdiag)
    model = SizeModel(tensors, cand, section_of)
    model.calibrate(0, len(blob), sec_bytes)
    done, compressions = 0, 0
    flats = {n: tensors[n].q.view(-1) for n in cand.names}
    shown = Progress("pruning", unit="compressions")  # each round re-compresses the whole artifact
    for _ in range(MAX_ROUNDS):
        # Aim a hair under the target: the size model is calibrated, not exact.
        k = max(model.smallest_k(target - 0.0002 * target, done), done + 1)
        if k > len(cand.cost):
            break
        for i, name in enumerate(cand.names):
            sel = cand.tensor_id[done:k] == i
            if sel.any():
                flats[name][torch.from_numpy(cand.flat_index[done:k][sel])] = 0
        done = k
        blob, sec_bytes = measure()
        compressions += 1
        shown.update(1)
        if len(blob) <= target:
            shown.close()
            return blob, PruneReport(done, len(blob), compressions, float(cand.cost[done - 1]))
        model.calibrate(done, len(blob), sec_bytes)
        if done == len(cand.cost):
            break
    raise PruneError(f"pruning {done} of {len(cand.cost)} +/-1 codes left the artifact at {len(blob)} bytes, "
                     f"over its target of {target} bytes (budget - code bytes - headroom): lower the bit "
                     "widths or the model size")
