"""The defining property of each frontier switch (docs/frontier.md), on a tiny random model."""

from __future__ import annotations

import pytest
import torch

from crownq.config.arch import ArchConfig
from crownq.model import build_model
from crownq.model.block import Block
from crownq.model.fused_ce import SoftcapCE, eager_softcap_ce, softcap_cross_entropy
from crownq.model.lanes import parallel_block
from crownq.model.recurrence import encoder_decoder, num_skip_slots, set_looping_for
from tests.frontier.helpers import randomised, tiny_frontier

BOS = 1


def _doc(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat((torch.tensor([BOS]), torch.randint(2, 64, (n - 1,), generator=g)))


@pytest.mark.parametrize("looping", [False, True])
def test_a_document_packed_after_another_gets_the_logits_it_gets_alone(looping):
    model = randomised(tiny_frontier())
    model.looping_active = looping
    first, second = _doc(13, 1), _doc(11, 2)
    with torch.no_grad():
        packed = model.logits(torch.cat((first, second))[None])[0, 13:]
        alone = model.logits(second[None])[0]
    assert (packed - alone).abs().max() < 1e-5


@pytest.mark.parametrize("switch_off", [dict(doc_attention=False), dict(smear_bos_mask=False)])
def test_without_doc_attention_or_the_bos_mask_documents_leak(switch_off):
    model = randomised(tiny_frontier(**switch_off))
    first, second = _doc(13, 1), _doc(11, 2)
    with torch.no_grad():
        packed = model.logits(torch.cat((first, second))[None])[0, 13:]
        alone = model.logits(second[None])[0]
    assert (packed - alone).abs().max() > 1e-3


def test_doc_max_len_cuts_a_document_into_independent_segments():
    model = randomised(tiny_frontier(doc_max_len=8, smear_gate=False, smear_window=0))
    doc = _doc(16, 3)
    with torch.no_grad():
        whole = model.logits(doc[None])[0, 8:]
        second_half = model.logits(doc[8:][None])[0]
    assert (whole - second_half).abs().max() < 1e-5


def test_loop_index_lists_of_the_frontier_spec():
    cfg = ArchConfig(num_layers=11, num_loops=2, loop_start=3, loop_end=5)
    assert encoder_decoder(cfg, looping=True) == ([0, 1, 2, 3, 4, 5, 3, 4], [5, 3, 4, 5, 6, 7, 8, 9, 10])
    assert encoder_decoder(cfg, looping=False) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10])
    assert num_skip_slots(cfg) == 8


def test_looping_switches_on_at_its_training_fraction_and_changes_the_function():
    model = randomised(tiny_frontier(loop_enable_at=0.35))
    ids = _doc(20, 4)[None]
    assert set_looping_for(model, 0.0) and not model.looping_active
    with torch.no_grad():
        off = model.logits(ids)
    assert not set_looping_for(model, 0.3)
    assert set_looping_for(model, 0.35) and model.looping_active
    with torch.no_grad():
        on = model.logits(ids)
    assert (on - off).abs().max() > 1e-3


def test_lanes_equal_the_sequential_block_when_the_lambdas_say_so():
    """With resid_mix (1, 0), rho = 1 and the MLP writing nothing, lane 0 after a parallel block is the
    sequential block without its MLP; with attention writing nothing into lane 1, lane 1 is the sequential
    block without its attention."""
    cfg = tiny_frontier()
    torch.manual_seed(0)
    block = Block(cfg, 3).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        block.resid_mix.copy_(torch.stack((torch.ones(32), torch.zeros(32))))
    x, x0 = torch.randn(2, 10, 32), torch.randn(2, 10, 32)
    one = torch.ones(2)
    post = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # attn -> lane 0 only, mlp -> lane 1 only
    with torch.no_grad():
        lane0, lane1, _ = parallel_block(block, x, x, x0, None, None, one, post)
        mlp_scale = block.mlp_scale.clone()
        block.mlp_scale.zero_()
        attn_only, _ = block(x, x0, None, None)
        block.mlp_scale.copy_(mlp_scale)
        attn_scale = block.attn_scale.clone()
        block.attn_scale.zero_()
        mlp_only, _ = block(x, x0, None, None)
        block.attn_scale.copy_(attn_scale)
    assert torch.allclose(lane0, attn_only, atol=1e-6)
    assert torch.allclose(lane1, mlp_only, atol=1e-6)


def test_skip_gate_at_init_is_the_midpoint():
    from crownq.model.gates import merge_skip

    x, skip, w = torch.randn(3, 8), torch.randn(3, 8), torch.rand(8)
    assert torch.allclose(merge_skip(x, skip, w, torch.zeros(8)), 0.5 * x + 0.5 * w * skip)
    assert torch.allclose(merge_skip(x, skip, w, None), x + w * skip)


def test_sparse_attention_gate_halves_the_attention_output_at_init():
    """Zero init: sigmoid(0) = 1/2 on every head, so attention's contribution is exactly halved."""
    cfg = tiny_frontier()
    torch.manual_seed(0)
    gated = Block(cfg, 0).attn.eval()
    plain = Block(ArchConfig(**{**cfg.__dict__, "attn_gate": "none"}), 0).attn.eval()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if k != "attn_gate_w"})
    with torch.no_grad():
        plain.out_proj.weight.normal_()
        gated.out_proj.weight.copy_(plain.out_proj.weight)
        x = torch.randn(2, 9, 32)
        assert torch.allclose(gated(x, None, None)[0], 0.5 * plain(x, None, None)[0], atol=1e-6)


def test_window_smeargate_is_transparent_at_init_and_leaves_bos_alone():
    model = build_model(tiny_frontier()).eval()
    e = torch.randn(1, 6, 32)
    ids = torch.tensor([[5, 6, BOS, 7, 8, 9]])
    assert torch.equal(model.smear(e, None), e)  # lambda starts at 0
    with torch.no_grad():
        model.smear.lam.fill_(1.0)
        out = model.smear(e, (ids != BOS).unsqueeze(-1))
    assert torch.equal(out[0, 2], e[0, 2]) and torch.equal(out[0, 0], e[0, 0])
    assert not torch.allclose(out[0, 3], e[0, 3])


def test_fused_ce_fallback_equals_eager_in_value_and_gradient():
    torch.manual_seed(0)
    x = (torch.randn(37, 50) * 40).requires_grad_()
    t = torch.randint(0, 50, (37,))
    w = torch.rand(37)
    eager = eager_softcap_ce(x, t, 30.0)
    (eager * w).sum().backward()
    g_eager, x.grad = x.grad.clone(), None
    fused = SoftcapCE.apply(x, t, 30.0)
    (fused * w).sum().backward()
    assert torch.allclose(fused, eager, rtol=1e-6, atol=1e-6)
    assert torch.allclose(x.grad, g_eager, rtol=1e-5, atol=1e-7)
    # On CPU the dispatcher takes the fallback (Triton is CUDA-only).
    assert torch.equal(softcap_cross_entropy(x.detach(), t, 30.0), fused.detach())


def test_every_frontier_switch_defaults_off():
    d = ArchConfig()
    assert (d.num_loops, d.skip_gates, d.parallel_start_layer, d.smear_window, d.smear_bos_mask, d.attn_gate,
            d.doc_attention, d.fused_ce) == (0, False, -1, 0, False, "none", False, False)


@pytest.mark.parametrize("field, value", [("parallel_start_layer", 1), ("loop_end", 9),
                                          ("attn_gate", "dense"), ("parallel_final_lane", "sum"),
                                          ("smear_window", -1)])
def test_bad_frontier_settings_fail_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"arch.{field}"):
        build_model(tiny_frontier(**{field: value}))
