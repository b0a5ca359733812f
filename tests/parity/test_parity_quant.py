"""Export quantisers against the record's own outputs (quant_small.pt) and against plain loops.

Golden part: the record's GPTQ int6 (block 64), round-to-nearest int6 and int8 per-row outputs for three
matrices; crownq in record mode (the QuantizerConfig defaults, i.e. the record presets) must give the
same integers and the same fp16 scales, exactly. Plain-loop part: the vectorised fast paths (candidate
batching, stacked matrices, lazy blocks) against a column-by-column implementation written here from
the method, on random inputs in float64, for the record's rules and for each departure switch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from crownq.config.quantizer import QuantizerConfig
from crownq.quant.export import quantize_state_dict
from crownq.quant.gptq import gptq_batch, gptq_tensors
from crownq.quant.rounding import (
    DEFAULT_CLIP_QUANTILES,
    RECORD_INT8_QUANTILE,
    percentile_per_row,
    rtn_clip_search,
)

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ref_golden" / "quant_small.pt"
MATRICES = ("m0", "m1", "m2")
QS = list(DEFAULT_CLIP_QUANTILES)


@pytest.fixture(scope="module")
def golden() -> dict:
    if not GOLDEN.is_file():
        pytest.skip(f"record golden file {GOLDEN} is absent (CI lays ../shared beside the repository)")
    return torch.load(GOLDEN, weights_only=True)


def _compare(name: str, q: Tensor, scale: Tensor, want_q: Tensor, want_scale: Tensor) -> None:
    diff = (q.int() - want_q.int()).abs()
    assert q.shape == want_q.shape and diff.max().item() == 0, (
        f"{name}: {int(diff.count_nonzero())} of {diff.numel()} codes differ, max |diff| {int(diff.max())}")
    assert scale.dtype == torch.float32
    bad = (scale.half() != want_scale) | (scale != want_scale.float())  # fp16-exact and equal
    assert not bad.any(), f"{name}: {int(bad.sum())} of {bad.numel()} fp16 scales differ"


# ------------------------------------------------------------------------------------ golden: record
@pytest.mark.shared_data
@pytest.mark.parametrize("m", MATRICES)
def test_record_gptq_equals_golden(golden, m):
    cfg = QuantizerConfig()  # the record's rules are the defaults
    out = gptq_tensors({m: golden[f"{m}.weight"]}, {m: golden[f"{m}.hessian"]}, {m: 6}, cfg.clip_quantiles,
                       int(golden["block_size"]), cfg.damp, cfg.act_order, "cpu", cfg.scale_floor,
                       cfg.clip_select)
    _compare(f"{m} gptq", *out[m], golden[f"{m}.gptq_q"], golden[f"{m}.gptq_scale"])
    assert out[m][0][:, 5].abs().sum() == 0  # input 5 is dead (zero Hessian row/column)


@pytest.mark.shared_data
@pytest.mark.parametrize("m", MATRICES)
def test_record_rtn_and_int8_equal_golden(golden, m):
    w = golden[f"{m}.weight"]
    _compare(f"{m} rtn", *rtn_clip_search(w, 6, QS), golden[f"{m}.rtn_q"], golden[f"{m}.rtn_scale"])
    _compare(f"{m} int8", *percentile_per_row(w, 8), golden[f"{m}.int8_q"], golden[f"{m}.int8_scale"])


@pytest.mark.shared_data
def test_record_preset_export_path_equals_golden(golden):
    # Through the export entry point with the config as the record preset sets it: attention matrices
    # by GPTQ (block 64 as in the golden file), an embedding by the int8 rule, RTN when method=rtn.
    sd = {f"{m}.weight": golden[f"{m}.weight"] for m in MATRICES}
    hs = {f"{m}.weight": golden[f"{m}.hessian"] for m in MATRICES}
    groups = {"m0.weight": "attn", "m1.weight": "mlp", "m2.weight": "embed"}
    cfg = QuantizerConfig(block_size=int(golden["block_size"]), passthrough_max_numel=1000, device="cpu")
    entries = quantize_state_dict(sd, groups, hs, cfg)
    for m in ("m0", "m1"):
        e = entries[f"{m}.weight"]
        _compare(f"{m} export gptq", e.q, e.scale, golden[f"{m}.gptq_q"], golden[f"{m}.gptq_scale"])
    e = entries["m2.weight"]
    _compare("m2 export int8", e.q, e.scale, golden["m2.int8_q"], golden["m2.int8_scale"])
    cfg.method = "rtn"
    entries = quantize_state_dict(sd, groups, hs, cfg)
    e = entries["m1.weight"]
    _compare("m1 export rtn", e.q, e.scale, golden["m1.rtn_q"], golden["m1.rtn_scale"])


@pytest.mark.shared_data
def test_record_floor_is_one_over_qmax_in_fp16_and_tiny_floor_departs(golden):
    # m0 is init-scale (row maxima ~0.05): every row's clip / 31 is below 1/31, so every golden scale
    # is the floor, fp16(1/31) (flooring before or after the cast is the same: fp16 rounding is monotone).
    floor16 = torch.tensor(1 / 31).half()
    assert (golden["m0.gptq_scale"] == floor16).all() and (golden["m0.rtn_scale"] == floor16).all()
    q, s = rtn_clip_search(golden["m0.weight"], 6, QS, floor="tiny")
    assert (s < float(floor16)).all() and q.abs().max() > 1  # the departure: a fine grid, more codes


# ------------------------------------------------------------------------------ plain loop oracles
def plain_gptq(w: Tensor, h: Tensor, bits: int, floor: float, clip_select: str, damp: float = 0.01
               ) -> tuple[Tensor, Tensor]:
    """Column-by-column GPTQ in float64, one clip quantile at a time, from the method's description."""
    qmax = 2 ** (bits - 1) - 1
    w, h = w.double().clone(), h.double().clone()
    k = w.shape[1]
    clips = [torch.quantile(w.abs(), q, dim=1) for q in QS]  # from the weights as given
    for i in range(k):
        if h[i, i] == 0:  # dead input: weight column zeroed, diagonal 1
            h[i, i] = 1.0
            w[:, i] = 0.0
    h += damp * h.diagonal().mean() * torch.eye(k, dtype=h.dtype)
    order = sorted(range(k), key=lambda c: -float(h[c, c]))
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h[order][:, order])), upper=True)
    results = []
    for clip in clips:
        s = torch.clamp(clip / qmax, min=floor).half().double()
        work = w[:, order].clone()
        q = torch.zeros_like(work)
        for i in range(k):
            q[:, i] = torch.clamp(torch.round(work[:, i] / s), -qmax, qmax)
            e = (work[:, i] - q[:, i] * s) / u[i, i]
            work[:, i + 1:] -= e[:, None] * u[i, i + 1:][None, :]
        q_orig = torch.empty_like(q)
        q_orig[:, order] = q
        dw = w - q_orig * s[:, None]
        results.append((q_orig, s, dw.square().sum(1), ((dw @ h) * dw).sum(1)))
    if clip_select == "matrix_mse":
        best = min(range(len(QS)), key=lambda c: (float(results[c][2].sum()), c))
        return results[best][0].to(torch.int8), results[best][1]
    q_out, s_out = torch.empty_like(w), torch.empty(w.shape[0], dtype=w.dtype)
    for r in range(w.shape[0]):
        best = min(range(len(QS)), key=lambda c: (float(results[c][3][r]), c))
        q_out[r], s_out[r] = results[best][0][r], results[best][1][r]
    return q_out.to(torch.int8), s_out


def _problem(rows: int, k: int, seed: int, dead: tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.distributions.Laplace(0.0, 0.3).sample((rows, k)).double()
    w[: rows // 4] *= 0.05  # a quarter of the rows at init scale: under the record's 1/qmax floor
    x = torch.randn(3 * k, k, generator=g, dtype=torch.float64) @ (
        torch.randn(k, k, generator=g, dtype=torch.float64) * 0.2 + torch.eye(k, dtype=torch.float64))
    x[:, list(dead)] = 0.0
    return w, x.T @ x / x.shape[0]


@pytest.mark.parametrize("clip_select,floor,block", [
    ("matrix_mse", "record", 64), ("matrix_mse", "tiny", 24), ("row_hessian", "record", 128),
    ("row_hessian", "tiny", 7)])
def test_gptq_fast_path_equals_plain_loop(clip_select, floor, block):
    # float64 on both sides: blocking and batching move values by ~1e-15, far from rounding boundaries.
    w, h = _problem(48, 80, seed=block, dead=(5, 41))
    floor_value = 1 / 31 if floor == "record" else 2.0**-14
    q_ref, s_ref = plain_gptq(w, h, 6, floor_value, clip_select)
    res = gptq_batch(w[None], h[None], 6, QS, block_size=block, floor=floor, clip_select=clip_select)
    assert torch.equal(res.q[0], q_ref) and torch.equal(res.scale[0], s_ref)
    assert res.q[0][:, [5, 41]].abs().sum() == 0


def test_stacked_matrices_each_pick_their_own_clip():
    # q and k share a Hessian and are stacked in one GPTQ problem; under matrix_mse each must still
    # get exactly what it gets alone (one clip quantile per matrix, not per stack).
    wq, h = _problem(32, 48, seed=1, dead=(3,))
    wk = torch.distributions.Laplace(0.0, 0.05).sample((16, 48)).double()  # a different best quantile
    out = gptq_tensors({"q": wq, "k": wk}, {"q": h, "k": h}, {"q": 6, "k": 6}, QS, block_size=16)
    for name, w in (("q", wq), ("k", wk)):
        q_ref, s_ref = plain_gptq(w, h, 6, 1 / 31, "matrix_mse")
        q, s = out[name]
        assert (q != q_ref).float().mean() <= 0.005  # fp32 fast path vs fp64 loop: rare ties only
        assert torch.equal(s.double(), s_ref)


@pytest.mark.parametrize("clip_select,floor", [("matrix_mse", "record"), ("row_hessian", "tiny"),
                                               ("matrix_mse", "0.001")])
def test_rtn_equals_plain_loop(clip_select, floor):
    w = torch.distributions.Laplace(0.0, 0.3).sample((30, 200))
    w[:8] *= 0.05
    floor_value = {"record": 1 / 31, "tiny": 2.0**-14}.get(floor) or float(floor)
    cands = []
    for quant in QS:
        s = torch.clamp(torch.quantile(w.abs(), quant, dim=1) / 31, min=floor_value).half().float()
        qc = torch.clamp(torch.round(w / s[:, None]), -31, 31)
        cands.append((qc, s, ((w - qc * s[:, None]) ** 2).sum(1)))
    q, s = rtn_clip_search(w, 6, QS, floor=floor, clip_select=clip_select)
    if clip_select == "matrix_mse":
        best = min(range(len(QS)), key=lambda c: (float(cands[c][2].sum()), c))
        assert torch.equal(q.float(), cands[best][0]) and torch.equal(s, cands[best][1])
    else:
        for r in range(w.shape[0]):
            best = min(range(len(QS)), key=lambda c: (float(cands[c][2][r]), c))
            assert torch.equal(q[r].float(), cands[best][0][r]) and s[r] == cands[best][1][r]


def test_int8_percentile_rule_equals_plain_loop():
    w = torch.randn(20, 700) * 0.02
    w[3, 5] = 4.0  # an outlier above the 99.99984th percentile's interpolation point gets clipped
    q, s = percentile_per_row(w, 8)
    for r in range(w.shape[0]):
        clip = float(torch.quantile(w[r].abs(), RECORD_INT8_QUANTILE))
        scale = max(clip / 127, 1 / 127)
        want = torch.clamp(torch.round(torch.clamp(w[r], -clip, clip) / torch.tensor(scale)), -127, 127)
        assert torch.equal(q[r].float(), want) and s[r] == torch.tensor(scale).half().float()


def test_bad_switch_values_are_named():
    w = torch.randn(4, 8)
    with pytest.raises(ValueError, match="quantizer.clip_select must be one of"):
        rtn_clip_search(w, 6, QS, clip_select="per_row")
    with pytest.raises(ValueError, match="quantizer.scale_floor must be one of"):
        rtn_clip_search(w, 6, QS, floor="huge")
    with pytest.raises(ValueError, match="quantizer.int8_clip must be one of"):
        quantize_state_dict({"e": torch.randn(300, 300)}, {"e": "embed"}, None,
                            QuantizerConfig(method="rtn", int8_clip="sdclip"))


@pytest.mark.shared_data
def test_record_gptq_codes_do_not_depend_on_the_thread_count(golden):
    """fp64 GPTQ (the default): one BLAS thread gives the record's codes too (fp32 flipped 68 on m1)."""
    cfg = QuantizerConfig()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = gptq_tensors({"m1": golden["m1.weight"]}, {"m1": golden["m1.hessian"]}, {"m1": 6},
                           cfg.clip_quantiles, int(golden["block_size"]), cfg.damp, cfg.act_order, "cpu",
                           cfg.scale_floor, cfg.clip_select)
    finally:
        torch.set_num_threads(threads)
    _compare("m1 gptq (1 thread)", *out["m1"], golden["m1.gptq_q"], golden["m1.gptq_scale"])
