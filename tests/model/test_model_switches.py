"""Each arch switch changes what it should: parameter counts, shapes and outputs."""

import pytest
import torch
from model_helpers import VOCAB, build, tokens

from crownq.model.block import remove_self_value_component
from crownq.model.layers import SmearGate, bigram_bucket

D, L, H, KV, HD = 32, 4, 4, 2, 8  # small_cfg: width, layers, heads, kv heads, head dim


def n_params(**overrides) -> int:
    return build(randomize=False, **overrides).num_params()


@pytest.mark.parametrize("overrides,removed", [
    (dict(bigram_vocab=0), 48 * 16 + 16 * D + 1),  # table, projection, scale
    (dict(ve_layers=[]), VOCAB * 8 + 8 * KV * HD + 1 + 2),  # table, projection, scale, 2 layer scales
    (dict(value_residual=False), 2 * (L - 1)),  # two mixing weights on every layer but the first
    (dict(smear_gate=False), D),
    (dict(unet_skips=False), (L // 2) * D),
    (dict(q_gain=False), H * L),
    (dict(resid_mix=False), 2 * D * L),
    (dict(tie_embeddings=False), -VOCAB * D),  # an untied head adds a V x D matrix
    (dict(bigram_dim=D), (48 * 16 + 16 * D) - 48 * D),  # table as wide as the model: no projection
    (dict(ve_dim=KV * HD), (VOCAB * 8 + 8 * KV * HD) - VOCAB * KV * HD),  # likewise for the VE table
    (dict(ve_layers=[3]), 1),  # one layer scale fewer
])
def test_switch_changes_param_count_exactly(overrides, removed):
    assert n_params() - n_params(**overrides) == removed


@pytest.mark.parametrize("overrides", [
    dict(xsa_last_n=0), dict(xsa_last_n=4), dict(rope_dims=0), dict(rope_dims=2), dict(ln_scale=False),
    dict(mlp_activation="relu2"), dict(qk_norm=False), dict(logit_softcap=0.0), dict(value_residual=False),
    dict(smear_gate=False), dict(bigram_vocab=0), dict(ve_layers=[]), dict(unet_skips=False),
])
def test_switch_changes_outputs_without_changing_param_count_unexpectedly(overrides):
    x = tokens()
    base = build(seed=3)
    other = build(seed=3, **overrides)
    # Copy every shared parameter so only the switch differs.
    shared = {k: v for k, v in base.state_dict().items() if k in other.state_dict()}
    other.load_state_dict(shared, strict=False)
    assert not torch.allclose(base.logits(x), other.logits(x), atol=1e-5)


def test_shapes_follow_width_heads_and_mlp():
    m = build(randomize=False, num_kv_heads=1, mlp_mult=2.0)
    blk = m.blocks[0]
    assert blk.attn.q_proj.weight.shape == (D, D)
    assert blk.attn.k_proj.weight.shape == (HD, D) and blk.attn.v_proj.weight.shape == (HD, D)
    assert blk.mlp.fc.weight.shape == (2 * D, D) and blk.mlp.proj.weight.shape == (D, 2 * D)
    assert m.value_embed.proj is None  # ve_dim 8 == kv width 1 x 8: no projection needed
    assert m.logits(tokens()).shape == (2, 16, VOCAB)


def test_xsa_and_ve_and_vr_sit_on_the_configured_layers():
    m = build(randomize=False, xsa_last_n=3, ve_layers=[0, 3])
    assert [b.attn.use_xsa for b in m.blocks] == [False, True, True, True]
    assert [b.attn.v_mix is not None for b in m.blocks] == [False, True, True, True]
    assert len(m.ve_layer_scales) == 2


def test_ln_scale_is_one_over_sqrt_layer():
    m = build(randomize=False)
    assert [b.norm_scale for b in m.blocks] == pytest.approx([1.0, 2 ** -0.5, 3 ** -0.5, 0.5])
    # With a single layer the scale is 1, so the switch is a no-op there.
    x = tokens()
    a, b = build(seed=4, num_layers=1, xsa_last_n=1, ve_layers=[0]), build(
        seed=4, num_layers=1, xsa_last_n=1, ve_layers=[0], ln_scale=False)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a.logits(x), b.logits(x))


def test_softcap_bounds_logits():
    x = tokens()
    m = build(seed=5, logit_softcap=2.0)
    assert m.logits(x).abs().max() <= 2.0
    with torch.no_grad():
        m.tok_emb.weight.mul_(50)
    uncapped = build(seed=5, logit_softcap=0.0)
    uncapped.load_state_dict(m.state_dict())
    assert uncapped.logits(x).abs().max() > 2.0


def test_xsa_matches_per_head_loop_reference():
    g = torch.Generator().manual_seed(0)
    y, v = torch.randn(2, 5, 6, 8, generator=g), torch.randn(2, 5, 3, 8, generator=g)
    out = remove_self_value_component(y, v)
    expected = torch.empty_like(y)
    for h in range(6):
        vh = v[:, :, h // 2]  # heads 0,1 -> kv 0; 2,3 -> kv 1; 4,5 -> kv 2
        unit = vh / vh.norm(dim=-1, keepdim=True)
        expected[:, :, h] = y[:, :, h] - (y[:, :, h] * unit).sum(-1, keepdim=True) * unit
    torch.testing.assert_close(out, expected)
    # The result has no component left along the head's own value.
    dots = (out.view(2, 5, 3, 2, 8) * v.unsqueeze(3)).sum(-1)
    assert dots.abs().max() < 1e-5


def test_smear_gate_mixes_with_previous_position():
    gate = SmearGate(4)
    with torch.no_grad():
        gate.gate.copy_(torch.tensor([0.0, 1.0, -2.0, 3.0]))
    x = torch.randn(2, 6, 4)
    g = torch.sigmoid(gate.gate)
    prev = torch.cat([torch.zeros(2, 1, 4), x[:, :-1]], dim=1)
    torch.testing.assert_close(gate(x), (1 - g) * x + g * prev)


def test_bigram_bucket_range_and_dependence_on_previous_token():
    t = torch.tensor([[5, 7, 7, 9], [6, 7, 7, 9]])
    b = bigram_bucket(t, 48)
    assert b.min() >= 0 and b.max() <= 47
    assert (b[:, 0] == 47).all()  # no previous token: the reserved last bucket
    assert b[0, 1] != b[1, 1]  # same token, different predecessor
    assert torch.equal(b[0, 2:], b[1, 2:])  # same (prev, token) pairs hash alike
    assert (bigram_bucket(torch.randint(0, 1024, (4, 300)), 3072)[:, 1:] < 3071).all()


def test_partial_rope_leaves_the_tail_untouched():
    m = build(randomize=False, rope_dims=4)
    rot = m.blocks[0].attn.rotary
    x = torch.randn(1, 9, 2, HD)
    out = rot(x)
    torch.testing.assert_close(out[..., 4:], x[..., 4:])
    torch.testing.assert_close(out[:, 0], x[:, 0])  # position 0: rotation by angle 0
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))  # rotations keep norms
    assert not torch.allclose(out[:, 1:, :, :4], x[:, 1:, :, :4])


def test_rope_scores_depend_only_on_relative_position():
    rot = build(randomize=False, rope_dims=0).blocks[0].attn.rotary  # full head dim rotated
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(HD, generator=g), torch.randn(HD, generator=g)
    seq = torch.stack([q] * 12)[None, :, None, :], torch.stack([k] * 12)[None, :, None, :]
    rq, rk = rot(seq[0])[0, :, 0], rot(seq[1])[0, :, 0]
    torch.testing.assert_close(rq[7] @ rk[4], rq[3] @ rk[0])
    torch.testing.assert_close(rq[11] @ rk[9], rq[2] @ rk[0])
    assert not torch.allclose(rq[7] @ rk[4], rq[7] @ rk[6])
