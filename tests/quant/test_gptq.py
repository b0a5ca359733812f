"""Vectorised GPTQ and RTN against plain reference implementations, on random inputs."""

import numpy as np
import pytest
import torch
from oracles.gptq_reference import plain_gptq

from crownq.quant.gptq import gptq_batch, gptq_tensors, inverse_cholesky_upper
from crownq.quant.rounding import DEFAULT_CLIP_QUANTILES, row_quantiles, rtn_clip_search

QS = list(DEFAULT_CLIP_QUANTILES)
# The plain reference implements crownq's departures (2^-14 floor, per-row Hessian-weighted clip); the
# record's rules are checked in tests/parity/test_parity_quant.py.
CROWNQ = {"floor": "tiny", "clip_select": "row_hessian"}


def _problem(rows: int, k: int, seed: int, dead: tuple[int, ...] = (), dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    w = torch.distributions.Laplace(0.0, 0.3).sample((rows, k)).to(dtype)
    mix = torch.randn(k, k, generator=g, dtype=dtype) * 0.2 + torch.eye(k, dtype=dtype)
    x = torch.randn(4 * k, k, generator=g, dtype=dtype) @ mix  # correlated inputs
    x[:, list(dead)] = 0.0
    return w, x.T @ x / x.shape[0]


@pytest.mark.parametrize("bits,act_order,block", [(6, True, 32), (5, False, 128), (8, True, 7)])
def test_gptq_equals_plain_column_by_column(bits, act_order, block):
    # float64 on both sides: the blocked/batched order of operations then changes values by ~1e-15,
    # far from any rounding boundary, so the integers and scales must be identical.
    w, h = _problem(40, 96, seed=bits, dead=(3, 50))
    w[:, [3, 50]] = 0.0  # the plain reference takes clip quantiles after zeroing dead columns
    res = gptq_batch(w[None], h[None], bits, QS, block_size=block, act_order=act_order, **CROWNQ)
    q_ref, s_ref = plain_gptq(w, h, bits, QS, act_order=act_order)
    assert torch.equal(res.q[0], q_ref)
    assert torch.equal(res.scale[0].double(), s_ref)
    assert res.q[0][:, [3, 50]].abs().sum() == 0  # dead columns quantise to exact zeros


def test_gptq_float32_matches_plain_within_rounding_ties():
    # Tolerance in fp32: a value within float rounding of a .5 boundary may round the other way, and
    # the changed error then feeds the row's later columns; we allow <= 0.5% of codes to differ, by 1.
    w, h = _problem(64, 128, seed=11)
    res = gptq_batch(w[None].float(), h[None].float(), 6, QS, block_size=32, **CROWNQ)
    q_ref, s_ref = plain_gptq(w, h, 6, QS)
    diff = (res.q[0].int() - q_ref.int()).abs()
    assert diff.max() <= 1
    assert diff.count_nonzero().item() <= 0.005 * diff.numel()
    assert (res.scale[0].double() == s_ref).float().mean() >= 0.95


def test_gptq_tensors_batches_shared_hessians_without_changing_results():
    (wq, h1), (wk, _), (wo, h2) = _problem(24, 48, 1), _problem(12, 48, 2), _problem(24, 48, 3)
    h_shared = h1  # q and k read the same input
    out = gptq_tensors({"q": wq, "k": wk, "o": wo}, {"q": h_shared, "k": h_shared, "o": h2},
                       {"q": 6, "k": 6, "o": 6}, QS, block_size=16)
    for name, w, h in (("q", wq, h1), ("k", wk, h1), ("o", wo, h2)):
        ref = gptq_batch(w.float()[None], h.float()[None], 6, QS, block_size=16)
        q, s = out[name]
        # Stacking rows / layers only reorders independent row computations: equal up to fp32 ties.
        assert (q != ref.q[0]).float().mean() <= 0.005
        assert (s == ref.scale[0]).float().mean() >= 0.95


def test_gptq_tensors_reports_missing_or_misshaped_hessian():
    w, h = _problem(8, 16, 0)
    with pytest.raises(KeyError, match="no Hessian for weight 'a'"):
        gptq_tensors({"a": w}, {}, {"a": 6})
    with pytest.raises(ValueError, match=r"'a' \(8, 16\) needs a \[16, 16\] Hessian"):
        gptq_tensors({"a": w}, {"a": h[:8, :8]}, {"a": 6})


def test_cholesky_failure_retries_with_more_damping():
    x = torch.randn(3, 8, dtype=torch.float64)
    x[:, 1] = x[:, 0]  # duplicate input: H is singular, its Cholesky fails without damping
    h = torch.stack([x.T @ x, torch.eye(8, dtype=torch.float64)])
    with pytest.raises(torch.linalg.LinAlgError):
        torch.linalg.cholesky(h[0])
    u = inverse_cholesky_upper(h, 0.0)
    assert torch.isfinite(u).all()
    # The healthy problem of the batch is untouched by the retry's extra damping.
    assert torch.allclose(u[1], torch.eye(8, dtype=torch.float64))
    res = gptq_batch(torch.randn(2, 4, 8, dtype=torch.float64), h, 6, QS, damp=0.0)
    assert res.q.abs().max() <= 31


def test_row_quantiles_match_numpy():
    x = torch.rand(6, 333, dtype=torch.float64)
    got = row_quantiles(x, QS)
    want = np.stack([[np.quantile(r, q) for r in x.numpy()] for q in QS])
    assert np.allclose(got.numpy(), want, rtol=0, atol=1e-15)


def test_rtn_clip_search_keeps_each_rows_best_candidate():
    w = torch.distributions.Laplace(0.0, 0.3).sample((20, 200))
    q, s = rtn_clip_search(w, 6, QS, **CROWNQ)
    for r in range(w.shape[0]):  # plain loop over rows and candidates
        best = None
        for quant in QS:
            clip = float(np.quantile(w[r].abs().double().numpy(), quant))
            scale = torch.tensor(max(clip / 31, 2.0**-14)).half().float()
            qr = torch.clamp(torch.round(w[r] / scale), -31, 31)
            err = float(((w[r] - qr * scale) ** 2).sum())
            if best is None or err < best[0]:
                best = (err, qr, scale)
        assert torch.equal(q[r].float(), best[1]) and s[r] == best[2]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gptq_on_gpu_matches_plain():
    w, h = _problem(64, 256, seed=4, dead=(7,))
    res = gptq_batch(w[None].cuda(), h[None].cuda(), 6, QS, block_size=64, **CROWNQ)
    q_ref, s_ref = plain_gptq(w, h, 6, QS)
    assert torch.equal(res.q[0].cpu(), q_ref) and torch.equal(res.scale[0].cpu().double(), s_ref)
