"""The frontier export switches (crownq/quant/sdclip.py, lqer.py, pergroup.py, codecs.py), against the
method written out here, plus the container's bounded, checked decoding of what they add."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crownq.config.quantizer import QuantizerConfig
from crownq.quant.artifact import ArtifactError, QuantTensor, RawTensor, pack, unpack
from crownq.quant.calibrate import collect_hessians
from crownq.quant.codecs import CodecError, codec_spec, compress, decompress, lrzip_available
from crownq.quant.export import plan_tensors, quantize_state_dict
from crownq.quant.lqer import choose_targets, lqer_repair
from crownq.quant.pergroup import greedy_l1_order, role_of
from crownq.quant.sdclip import sdclip_scales
from tests.quant.test_artifact import _resign


def _laplace(*shape):
    return torch.distributions.Laplace(0.0, 0.3).sample(shape)  # trained-like weights


def test_sdclip_scale_is_k_std_over_qmax_and_the_hessian_variant_follows_the_formula():
    torch.manual_seed(0)
    w = torch.randn(16, 40, dtype=torch.float64) * torch.linspace(0.1, 2, 16, dtype=torch.float64)[:, None]
    plain = sdclip_scales(w, 12.0, 6)
    assert torch.equal(plain, (12.0 * w.std(1) / 31).half().double())
    hdiag = torch.rand(40, dtype=torch.float64) + 0.1
    iota = hdiag / hdiag.mean()
    r = np.array([np.mean(np.abs(w[i].numpy()) * iota.numpy()) for i in range(16)])
    r = r / r.mean()
    want = torch.from_numpy(12.0 * w.std(1).numpy() * (1 + 0.175 * (r - 1)) / 31).half().double()
    assert torch.equal(sdclip_scales(w, 12.0, 6, hdiag, 0.175), want)
    assert torch.equal(sdclip_scales(w, 12.0, 6, hdiag, 0.0), plain)
    zero = sdclip_scales(torch.zeros(2, 8), 12.0, 6)  # constant rows: a tiny positive scale, never 0
    assert (zero > 0).all() and torch.isfinite(zero).all()


def _toy_state(gate_shape=(8, 12)):
    torch.manual_seed(0)
    sd = {"blocks.0.attn.q_proj.weight": _laplace(64, 64), "blocks.0.mlp.fc.weight": _laplace(128, 64),
          "tok_emb.weight": _laplace(1200, 64), "blocks.0.attn.attn_gate_w": torch.randn(*gate_shape),
          "blocks.0.attn.q_gain": torch.full((4,), 5.0)}
    groups = {"blocks.0.attn.q_proj.weight": "attn", "blocks.0.mlp.fc.weight": "mlp",
              "tok_emb.weight": "embed", "blocks.0.attn.attn_gate_w": "other",
              "blocks.0.attn.q_gain": "other"}
    x = torch.randn(512, 64)
    h = x.T @ x / 512
    hess = {"blocks.0.attn.q_proj.weight": h, "blocks.0.mlp.fc.weight": h, "tok_emb.weight": h}
    return sd, groups, hess


def test_switches_default_off_and_plan_as_configured():
    sd, groups, _ = _toy_state()
    record = plan_tensors(sd, groups, QuantizerConfig())
    assert record["blocks.0.attn.attn_gate_w"] == ("fp16", 16) and record["tok_emb.weight"] == ("rtn", 8)
    on = plan_tensors(sd, groups, QuantizerConfig(gate_int8=True, embed_method="gptq", embed_bits=7))
    assert on["blocks.0.attn.attn_gate_w"] == ("gate8", 8) and on["tok_emb.weight"] == ("gptq", 7)
    # Side tables (BigramHash, value embeddings) have no output-head Hessian: RTN at the embedding width.
    side = {**sd, "bigram.embed.weight": _laplace(1200, 64),
            "value_embed.embed.weight": _laplace(1200, 64)}
    side_groups = {**groups, "bigram.embed.weight": "embed", "value_embed.embed.weight": "embed"}
    with_side = plan_tensors(side, side_groups, QuantizerConfig(embed_method="gptq", embed_bits=7))
    assert with_side["tok_emb.weight"] == ("gptq", 7)
    assert with_side["bigram.embed.weight"] == with_side["value_embed.embed.weight"] == ("rtn", 7)
    big = plan_tensors(_toy_state((8, 2048))[0], groups, QuantizerConfig(gate_int8=True))
    assert big["blocks.0.attn.attn_gate_w"] != ("gate8", 8)  # > 8192 values: not a small gate
    with pytest.raises(ValueError, match="quantizer.embed_method"):
        plan_tensors(sd, groups, QuantizerConfig(embed_method="lzma"))
    with pytest.raises(ValueError, match="Hessian"):
        quantize_state_dict(sd, groups, {"blocks.0.attn.q_proj.weight": torch.eye(64),
                                         "blocks.0.mlp.fc.weight": torch.eye(64)},
                            QuantizerConfig(embed_method="gptq"))


def test_gate_int8_rows_and_lqer_selection_follow_the_method():
    sd, groups, hess = _toy_state()
    cfg = QuantizerConfig(gate_int8=True, clip_select="sdclip", lqer_rank=2, lqer_top_k=2)
    entries = quantize_state_dict(sd, groups, hess, cfg)
    gate = entries["blocks.0.attn.attn_gate_w"]
    w = sd["blocks.0.attn.attn_gate_w"]
    s = (w.abs().amax(1) / 127).half().float()
    assert torch.equal(gate.scale, s) and torch.equal(gate.q, torch.round(w / s[:, None]).to(torch.int8))
    # LQER goes to the two tensors with the largest |W - deq|_F (the int8 embedding is not one of them
    # unless its error is larger: compute the ranking here).
    quant = [n for n in sd if isinstance(entries[n], QuantTensor) and n != "blocks.0.attn.attn_gate_w"]
    plain = quantize_state_dict(sd, groups, hess, QuantizerConfig(gate_int8=True, clip_select="sdclip"))
    norms = {n: float((sd[n] - plain[n].dequantize()).norm()) for n in quant}
    chosen = sorted(norms, key=lambda n: -norms[n])[:2]
    assert sorted(n for n in quant if entries[n].lqer is not None) == sorted(chosen)
    for n in chosen:  # the repair lowers the error
        assert (sd[n] - entries[n].dequantize()).norm() < (sd[n] - plain[n].dequantize()).norm()
    assert choose_targets({"a": 1.0, "b": 3.0, "c": 3.0}, 2) == ["b", "c"]
    assert lqer_repair({"a": torch.ones(4, 4)}, {"a": torch.ones(4, 4)}, 2, 0, 64) == {}


@pytest.mark.parametrize("grouping", ["sections", "pergroup"])
def test_lqer_and_pergroup_roundtrip_through_the_container(grouping):
    sd, groups, hess = _toy_state()
    cfg = QuantizerConfig(gate_int8=True, clip_select="sdclip", embed_method="gptq", embed_bits=7,
                          lqer_rank=4)
    entries = quantize_state_dict(sd, groups, hess, cfg)
    back = unpack(pack(entries, codec="brotli", grouping=grouping))
    for name, e in entries.items():
        got = back[name]
        if isinstance(e, QuantTensor):
            assert torch.equal(got.q, e.q) and torch.equal(got.scale, e.scale.half().float()), name
            assert (got.lqer is None) == (e.lqer is None), name
        assert torch.equal(got.dequantize(), e.dequantize()), name


def test_greedy_l1_order_matches_the_plain_walk():
    torch.manual_seed(1)
    q = torch.randint(-5, 6, (40, 9))
    want, used, cur = [], set(), 0
    for _ in range(40):
        want.append(cur)
        used.add(cur)
        dists = [(int((q[j] - q[cur]).abs().sum()), j) for j in range(40) if j not in used]
        if dists:
            cur = min(dists)[1]
    assert greedy_l1_order(q).tolist() == want
    assert role_of("blocks.3.mlp.fc.weight") == "mlp.fc" and role_of("blocks.0.attn.attn_gate_w") is None


def _pergroup_blob():
    q = {"tok_emb.weight": torch.randint(-31, 32, (50, 16), dtype=torch.int8),
         "blocks.0.attn.q_proj.weight": torch.randint(-31, 32, (16, 16), dtype=torch.int8)}
    entries = {n: QuantTensor(v, torch.rand(v.shape[0]) + 0.5, 6) for n, v in q.items()}
    entries["blocks.0.attn.q_gain"] = RawTensor(torch.ones(4), "fp16")
    return entries, pack(entries, codec="brotli", grouping="pergroup")


def test_forged_pergroup_and_lqer_headers_are_refused():
    entries, blob = _pergroup_blob()
    assert torch.equal(unpack(blob)["tok_emb.weight"].q, entries["tok_emb.weight"].q)

    def shift_perm(h):
        by = {t["name"]: t for t in h["tensors"]}  # swapped orders: same bytes needed, wrong contents
        by["tok_emb.weight"]["perm_offset"], by["blocks.0.attn.q_proj.weight"]["perm_offset"] = 16, 0
    with pytest.raises(ArtifactError, match="not a permutation"):
        unpack(_resign(blob, shift_perm))

    def big_perm(h):
        next(s for s in h["sections"] if s["name"] == "perm")["raw_len"] = 10**9
    with pytest.raises(ArtifactError, match="refused before decoding"):
        unpack(_resign(blob, big_perm))

    def bad_lqer(h):
        h["tensors"][0]["lqer"] = {"rank": 99, "mode": "asym", "group": 64, "offset": 0, "scale_offset": 0}
    with pytest.raises(ArtifactError, match="lqer"):
        unpack(_resign(blob, bad_lqer))


def test_brotli_shuffle_codec_roundtrips_any_length_and_is_bounded():
    spec = codec_spec("brotli_shuffle")
    assert spec["stride"] == 2
    for data in (b"", b"a", bytes(range(255)) * 3 + b"xyz"):
        assert decompress(compress(data, spec), spec, len(data)) == data
    with pytest.raises(CodecError, match="more bytes"):
        decompress(compress(b"abcdef" * 100, spec), spec, 10)


@pytest.mark.skipif(not lrzip_available(), reason="the lrzip binary is not installed (per-group back-end)")
def test_lrzip_backend_roundtrips():
    spec = {"codec": "lrzip", "level": 9}
    data = bytes(range(256)) * 50
    assert decompress(compress(data, spec), spec, len(data)) == data


def test_lrzip_timeout_and_failure_are_clear_codec_errors(monkeypatch):
    import subprocess

    import crownq.quant.codecs as codecs

    def slow(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs.get("timeout"))

    monkeypatch.setattr(codecs.subprocess, "run", slow)
    with pytest.raises(codecs.CodecError,
                       match=r"lrzip did not compress 12,800 bytes within 600 s.*CROWNQ_LRZIP=off"):
        codecs.compress(bytes(range(256)) * 50, {"codec": "lrzip", "level": 9})

    def broken(cmd, **kwargs):
        raise subprocess.CalledProcessError(2, cmd, stderr=b"lrzip: bad magic\n")

    monkeypatch.setattr(codecs.subprocess, "run", broken)
    with pytest.raises(codecs.CodecError, match="lrzip failed to compress 3 bytes .exit 2: lrzip: bad magic"):
        codecs.compress(b"abc", {"codec": "lrzip", "level": 9})
    # CROWNQ_LRZIP=off takes lrzip out of the per-group back-ends even where the binary is installed.
    monkeypatch.setenv("CROWNQ_LRZIP", "off")
    assert not codecs.lrzip_available()
    assert all(spec["codec"] != "lrzip" for spec in codecs.pergroup_specs())


def test_head_hessian_is_the_final_hidden_state_gram():
    from crownq.model import build_model

    model = build_model({"name": "t", "vocab_size": 64, "num_layers": 2, "model_dim": 32, "num_heads": 2,
                         "num_kv_heads": 1, "mlp_mult": 2.0, "bigram_vocab": 0, "ve_layers": []})
    ids = torch.randint(0, 64, (2, 16))
    h = collect_hessians(model, [ids], progress=False, head=True)
    x = model.hidden(ids).detach().reshape(-1, 32).double()
    assert torch.allclose(h["tok_emb.weight"].double(), x.T @ x / x.shape[0], rtol=1e-5, atol=1e-7)
    assert "tok_emb.weight" not in collect_hessians(model, [ids], progress=False)
