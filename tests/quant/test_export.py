"""Pruning to a byte target, calibration, export_model / load_artifact and code-byte accounting."""

import pytest
import torch
from torch import nn

from crownq.config.quantizer import QuantizerConfig
from crownq.quant.artifact import QuantTensor, unpack
from crownq.quant.calibrate import collect_hessians, share_hessians
from crownq.quant.export import compress_entries, export_model, load_artifact
from crownq.quant.prune import PruneError, prune_candidates, prune_to_fit
from crownq.quant.rounding import rtn_clip_search


def _quant_entries(n: int = 6, seed: int = 0) -> tuple[dict, dict]:
    torch.manual_seed(seed)
    entries, hdiag = {}, {}
    for i in range(n):
        q, s = rtn_clip_search(torch.distributions.Laplace(0.0, 0.3).sample((96, 128)), 6)
        entries[f"w{i}"] = QuantTensor(q.contiguous(), s, 6)
        hdiag[f"w{i}"] = torch.rand(128) + 0.1
    return entries, hdiag


@pytest.mark.parametrize("shrink", [0.002, 0.01, 0.04])
def test_pruned_artifact_never_over_target_and_prunes_cheapest_pm1(shrink):
    entries, hdiag = _quant_entries()
    before = {n: e.q.clone() for n, e in entries.items()}
    cfg = QuantizerConfig(lzma_preset=1)
    blob, sizes, section_of = compress_entries(entries, cfg)
    target = int(len(blob) * (1 - shrink))
    cand = prune_candidates(entries, hdiag)
    out, report = prune_to_fit(entries, hdiag, section_of, lambda: compress_entries(entries, cfg)[:2],
                               target, (blob, sizes))
    assert len(out) <= target and report.total_bytes == len(out) and report.pruned > 0
    changed = {n: before[n] != e.q for n, e in entries.items()}
    assert sum(int(c.sum()) for c in changed.values()) == report.pruned
    for n, c in changed.items():
        assert (before[n][c].abs() == 1).all() and (entries[n].q[c] == 0).all()  # only +/-1 -> 0
    # Exactly a prefix of the ascending-cost order was pruned.
    pruned_cost = cand.cost[:report.pruned]
    assert pruned_cost.max() <= cand.cost[report.pruned:].min()
    for i, name in enumerate(cand.names):
        idx = torch.from_numpy(cand.flat_index[:report.pruned][cand.tensor_id[:report.pruned] == i])
        assert (entries[name].q.view(-1)[idx] == 0).all()
    # It is the artifact of the pruned codes, and prunes few: well under 3x what the entropy needs.
    assert all(torch.equal(unpack(out)[n].q, e.q) for n, e in entries.items())
    assert report.pruned < len(cand.cost)


def test_pruning_reports_impossible_target():
    entries, hdiag = _quant_entries(2)
    cfg = QuantizerConfig(lzma_preset=1)
    blob, sizes, section_of = compress_entries(entries, cfg)
    with pytest.raises(PruneError, match="over its target of 1000 bytes"):
        prune_to_fit(entries, hdiag, section_of, lambda: compress_entries(entries, cfg)[:2], 1000,
                     (blob, sizes))


class TinyLM(nn.Module):
    """Stand-in with the model contract: quantizable_linears, export_groups, logits."""

    def __init__(self, d: int = 32, vocab: int = 200):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.fc = nn.Linear(d, 2 * d, bias=False)
        self.proj = nn.Linear(2 * d, d, bias=False)
        self.gain = nn.Parameter(torch.ones(d))

    def quantizable_linears(self):
        return [("q", self.q), ("k", self.k), ("fc", self.fc), ("proj", self.proj)]

    def export_groups(self):
        return {"emb.weight": "embed", "q.weight": "attn", "k.weight": "attn", "fc.weight": "mlp",
                "proj.weight": "mlp", "gain": "other"}

    def logits(self, ids):
        h = self.emb(ids) * self.gain
        h = h + self.q(h) * self.k(h)
        return h + self.proj(torch.relu(self.fc(h)))


def test_collect_hessians_matches_manual_and_shares_identical_inputs():
    torch.manual_seed(0)
    model = TinyLM()
    batches = [torch.randint(0, 64, (2, 5)) for _ in range(3)]
    hs = collect_hessians(model, batches, progress=False)
    x = torch.cat([(model.emb(b) * model.gain).reshape(-1, 32) for b in batches]).detach().double()
    assert torch.allclose(hs["q.weight"].double(), x.T @ x / x.shape[0], atol=1e-5)
    assert hs["k.weight"] is hs["q.weight"]  # q and k read the same tensor
    assert hs["fc.weight"] is not hs["q.weight"] and hs["proj.weight"].shape == (64, 64)
    assert share_hessians(hs) is hs  # no process group: identity
    damped = collect_hessians(model, batches, damp=0.5, progress=False)["q.weight"]
    diag = hs["q.weight"].diagonal()
    assert torch.allclose(damped.diagonal(), diag + 0.5 * diag.mean())


@pytest.mark.parametrize("method", ["gptq", "rtn", "none"])
def test_export_and_load_roundtrip(method):
    torch.manual_seed(1)
    model = TinyLM()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.distributions.Laplace(0.0, 0.3).sample(p.shape))
    hs = collect_hessians(model, [torch.randint(0, 64, (4, 16))], progress=False)
    cfg = QuantizerConfig(method=method, passthrough_max_numel=1000, lzma_preset=1)
    sd = model.state_dict()
    res = export_model(sd, model.export_groups(), hs, cfg, code_bytes=123)
    assert res.total_bytes == res.model_bytes + 123 == len(res.blob) + 123 and res.pruned == 0
    out = load_artifact(res.blob, {k: v.shape for k, v in sd.items()})
    # 1-D control tensors: fp16 by default (the record's), exact with control_store=fp32.
    assert torch.equal(out["gain"], sd["gain"].half().float())
    exact = export_model(sd, model.export_groups(), hs, QuantizerConfig(
        method=method, passthrough_max_numel=1000, lzma_preset=1, control_store="fp32"), code_bytes=0)
    assert torch.equal(load_artifact(exact.blob)["gain"], sd["gain"])
    for name in ("q.weight", "emb.weight", "proj.weight"):
        err = (out[name] - sd[name]).abs().max().item()
        assert err < (1e-3 if method == "none" else 0.25), (name, err)
    if method != "none":
        entries = unpack(res.blob)
        assert entries["q.weight"].bits == 6 and entries["emb.weight"].bits == 8


def test_export_prunes_to_budget_and_rejects_bad_config():
    torch.manual_seed(2)
    model = TinyLM(d=64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.distributions.Laplace(0.0, 0.3).sample(p.shape))
    hs = collect_hessians(model, [torch.randint(0, 64, (4, 16))], progress=False)
    cfg = QuantizerConfig(passthrough_max_numel=1000, lzma_preset=1, headroom_bytes=0)
    free = export_model(model.state_dict(), model.export_groups(), hs, cfg, 0).model_bytes
    cfg.budget_bytes = free - 300
    res = export_model(model.state_dict(), model.export_groups(), hs, cfg, 0)
    assert res.pruned > 0 and res.total_bytes <= cfg.budget_bytes and "prune" in res.seconds
    with pytest.raises(ValueError, match="quantizer.method must be one of"):
        export_model(model.state_dict(), model.export_groups(), hs, QuantizerConfig(method="awq"), 0)
    with pytest.raises(ValueError, match="needs Hessians"):
        export_model(model.state_dict(), model.export_groups(), None, QuantizerConfig(), 0)




@pytest.mark.parametrize("prune_cost", ["scale", "scale_hdiag"])
def test_prune_cost_switch_orders_by_scale_or_scale_times_hdiag(prune_cost):
    # scale (the record's): +/-1 codes go in ascending scale[row]^2, whatever the Hessian says;
    # scale_hdiag: in ascending scale[row]^2 * H[col, col].
    from crownq.quant.export import quantize_state_dict

    torch.manual_seed(3)
    model = TinyLM(d=64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.distributions.Laplace(0.0, 0.3).sample(p.shape))
    hs = collect_hessians(model, [torch.randint(0, 64, (4, 16))], progress=False)
    cfg = QuantizerConfig(passthrough_max_numel=1000, lzma_preset=1, headroom_bytes=0, prune_cost=prune_cost)
    sd, groups = model.state_dict(), model.export_groups()
    before = quantize_state_dict(sd, groups, hs, cfg)
    cfg.budget_bytes = export_model(sd, groups, hs, cfg, 0).model_bytes - 400
    after = unpack(export_model(sd, groups, hs, cfg, 0).blob)
    pruned_cost, kept_cost = [], []
    for name in ("q.weight", "k.weight", "fc.weight", "proj.weight"):
        q0, q1, s = before[name].q, after[name].q, before[name].scale
        cost = s.double()[:, None].square().expand_as(q0)
        if prune_cost == "scale_hdiag":
            cost = cost * hs[name].diagonal().double()[None, :]
        pm1 = q0.abs() == 1
        pruned_cost.append(cost[pm1 & (q1 == 0)])
        kept_cost.append(cost[pm1 & (q1 != 0)])
    pruned, kept = torch.cat(pruned_cost), torch.cat(kept_cost)
    assert pruned.numel() > 0 and pruned.max() <= kept.min()
    with pytest.raises(ValueError, match="quantizer.prune_cost must be one of"):
        export_model(sd, groups, hs, QuantizerConfig(prune_cost="hessian"), 0)
