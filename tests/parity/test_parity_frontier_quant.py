"""The frontier's export against its own outputs (../shared/data/frontier_golden/quant_small.pt).

SDClip GPTQ (m0 attention-like k 13, m1/m2 MLP-like k 11.5, int6) and the embedding's int7 GPTQ (k 14):
integers and fp16 scales equal. LQER: the packing of the saved SVD factors equal, crownq's own SVD
equal up to the sign of each rank-1 component, the reconstruction within 1e-6. The record's mini
export (`pipeline.*`): gate int8, LQER on the embedding, passthroughs, through crownq's artifact and back.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from crownq.config.quantizer import QuantizerConfig
from crownq.quant.artifact import pack, unpack
from crownq.quant.export import quantize_state_dict
from crownq.quant.lqer import pack_asym, pack_sym, svd_factors
from tests.parity.frontier_golden import load_frontier_golden

pytestmark = pytest.mark.shared_data
GROUP_OF = {"m0": "attn", "m1": "mlp", "m2": "mlp"}


@pytest.fixture(scope="module")
def golden() -> dict:
    return load_frontier_golden("quant_small.pt")


def _frontier_cfg(**kw) -> QuantizerConfig:
    base = dict(clip_select="sdclip", embed_method="gptq", embed_bits=7, gate_int8=True, lqer_rank=4,
                lqer_top_k=3, lqer_group=64)
    base.update(kw)
    return QuantizerConfig(**base)


def _equal_codes(name: str, q: Tensor, scale: Tensor, want_q: Tensor, want_scale: Tensor) -> None:
    diff = (q.int() - want_q.int()).abs()
    assert q.shape == want_q.shape and int(diff.max()) == 0, (
        f"{name}: {int(diff.count_nonzero())} of {diff.numel()} codes differ")
    bad = (scale.half() != want_scale) | (scale != want_scale.float())
    assert not bad.any(), f"{name}: {int(bad.sum())} of {bad.numel()} fp16 scales differ"


def test_sdclip_gptq_equals_golden(golden):
    cfg = _frontier_cfg(lqer_rank=0)
    sd = {m: golden[f"{m}.weight"] for m in GROUP_OF}
    for m, group in GROUP_OF.items():  # the golden k are the frontier's group k
        assert float(golden[f"{m}.clip_sigmas"]) == getattr(cfg, f"sdclip_k_{group}")
    entries = quantize_state_dict(sd, GROUP_OF, {m: golden[f"{m}.hessian"] for m in GROUP_OF}, cfg)
    for m in GROUP_OF:
        e = entries[m]
        assert e.bits == int(golden[f"{m}.bits"]) == 6
        _equal_codes(m, e.q, e.scale, golden[f"{m}.q"], golden[f"{m}.scale"])
        assert e.q[:, int(golden[f"{m}.dead_column"])].abs().sum() == 0
    assert int(entries["m1"].q.abs().max()) == 31  # the outliers reach the clamp


def test_int7_embedding_gptq_equals_golden(golden):
    cfg = _frontier_cfg(lqer_rank=0)
    entries = quantize_state_dict({"tok_emb.weight": golden["emb.weight"]}, {"tok_emb.weight": "embed"},
                                  {"tok_emb.weight": golden["emb.hessian"]}, cfg)
    e = entries["tok_emb.weight"]
    assert e.bits == 7
    _equal_codes("tok_emb int7", e.q, e.scale, golden["emb.q"], golden["emb.scale"])


@pytest.mark.parametrize("m", ["m1", "emb"])
def test_lqer_factors_and_reconstruction_equal_golden(golden, m):
    f = pack_asym(golden[f"{m}.lqer.A"], golden[f"{m}.lqer.B"], 64)
    assert torch.equal(f.qa, golden[f"{m}.lqer.qA"]) and torch.equal(f.qb, golden[f"{m}.lqer.qB"])
    assert torch.equal(f.sa.half().reshape(()), golden[f"{m}.lqer.sA"])
    assert torch.equal(f.sb.half(), golden[f"{m}.lqer.sB"])
    recon = golden[f"{m}.q"].float() * golden[f"{m}.scale"].float()[:, None] + f.correction()
    assert (recon - golden[f"{m}.lqer.recon"]).abs().max() <= 1e-6
    # crownq's own SVD of the error: the same factors up to the sign of each rank-1 component.
    err = golden[f"{m}.weight"] - golden[f"{m}.q"].float() * golden[f"{m}.scale"].float()[:, None]
    a, b = svd_factors(err, 4)
    sign = torch.sign((a * golden[f"{m}.lqer.A"]).sum(0))
    assert torch.allclose(a * sign, golden[f"{m}.lqer.A"], rtol=1e-4, atol=2e-5)
    assert torch.allclose(b * sign[:, None], golden[f"{m}.lqer.B"], rtol=1e-4, atol=2e-5)


def test_lqer_symmetric_fallback_equals_golden(golden):
    f = pack_sym(golden["emb.lqer.A"], golden["emb.lqer.B"])
    for key, got in (("qA", f.qa), ("qB", f.qb), ("sA", f.sa.half()), ("sB", f.sb.half())):
        assert torch.equal(got, golden[f"emb.lqer_sym.{key}"]), key


@pytest.mark.parametrize("compressor", ["sections", "pergroup"])
def test_frontier_mini_export_equals_golden(golden, compressor):
    """The record's gptq_mixed_quantize on its mini state dict. Routing: the record stores matrices of
    <= 65,536 values fp16 by size; crownq routes by group, so the MLP matrix is given group `other`
    (crownq always GPTQs attention/MLP matrices) and then takes the same fp16 passthrough."""
    sd = golden["pipeline.state_dict"]
    groups = {"tok_emb.weight": "embed", "blocks.0.mlp.fc.weight": "other",
              "blocks.0.attn.attn_gate_w": "other", "blocks.0.attn.q_gain": "other"}
    cfg = _frontier_cfg(compressor=compressor)
    entries = quantize_state_dict(sd, groups, golden["pipeline.hessians"], cfg)
    res = golden["pipeline.result"]
    emb, gate = entries["tok_emb.weight"], entries["blocks.0.attn.attn_gate_w"]
    _equal_codes("tok_emb", emb.q, emb.scale, res["tok_emb.weight.q"], res["tok_emb.weight.scale"])
    gate_key = "blocks.0.attn.attn_gate_w"
    _equal_codes("gate", gate.q, gate.scale, res[f"{gate_key}.gq"], res[f"{gate_key}.gs"])
    f = emb.lqer
    assert f is not None and f.mode == "asym" and f.rank == 4
    assert torch.equal(f.qa, res["tok_emb.weight.lqA_a"]) and torch.equal(f.qb, res["tok_emb.weight.lqB_a"])
    assert torch.equal(f.sa.half().reshape(()), res["tok_emb.weight.lqAs_a"])
    assert torch.equal(f.sb.half(), res["tok_emb.weight.lqBs_a"])
    blob = pack(entries, codec="brotli", grouping=compressor)
    loaded = {n: e.dequantize() for n, e in unpack(blob).items()}
    want = golden["pipeline.dequant"]
    assert (loaded["tok_emb.weight"] - want["tok_emb.weight"]).abs().max() <= 1e-6
    for name in ("blocks.0.attn.attn_gate_w", "blocks.0.mlp.fc.weight", "blocks.0.attn.q_gain"):
        assert torch.equal(loaded[name], want[name].float()), name
