"""Muon: Newton-Schulz orthogonalisation, the update rule, and sharded == unsharded across 2 gloo ranks."""

import sys
from pathlib import Path

import pytest
import torch

from crownq.train.muon import Muon, newton_schulz_orthogonalize

sys.path.insert(0, str(Path(__file__).parent))
from train_dist_workers import muon_worker, spawn_ranks  # noqa: E402


@pytest.mark.parametrize("shape", [(32, 32), (64, 16), (16, 48)])
def test_newton_schulz_gives_near_orthogonal_matrix(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    o = newton_schulz_orthogonalize(g, steps=5)
    assert o.shape == g.shape
    s = torch.linalg.svdvals(o)
    # The quintic iteration deliberately lands singular values in a band around 1, not exactly on it.
    assert s.min() > 0.5 and s.max() < 1.3, s
    # Same singular vectors as the polar factor U V^T: their inner product is clearly positive.
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    cos = (o * (u @ vh)).sum() / (o.norm() * (u @ vh).norm())
    assert cos > 0.95


def test_muon_step_matches_the_update_rule():
    torch.manual_seed(0)
    p0 = torch.randn(24, 8)
    grads = [torch.randn(24, 8) for _ in range(3)]
    p = torch.nn.Parameter(p0.clone())
    opt = Muon([p], lr=0.02, momentum=0.9, weight_decay=0.5, backend_steps=5)
    ref, buf = p0.clone(), torch.zeros_like(p0)
    for g in grads:
        p.grad = g.clone()
        opt.step()
        buf = 0.9 * buf + g
        update = newton_schulz_orthogonalize(g + 0.9 * buf, 5) * (24 / 8) ** 0.5
        ref = ref * (1 - 0.02 * 0.5) - 0.02 * update
    torch.testing.assert_close(p.detach(), ref, rtol=1e-5, atol=1e-6)


def test_muon_rejects_non_matrices():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(4))], lr=0.1, momentum=0.9)


def test_sharded_updates_equal_unsharded_on_two_gloo_ranks(tmp_path):
    torch.manual_seed(1)
    shapes = [(16, 8), (8, 8), (8, 24), (12, 12), (4, 20)]  # odd count: ranks own 3 and 2
    params = [torch.randn(*s) for s in shapes]
    grads = [[torch.randn(*s) for s in shapes] for _ in range(2)]
    out = tmp_path / "sharded.pt"
    spawn_ranks(muon_worker, 2, params, grads, str(out))
    sharded = torch.load(out, weights_only=True)
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    opt = Muon(ps, lr=0.05, momentum=0.9, weight_decay=0.1)
    for g_step in grads:
        for p, g in zip(ps, g_step):
            p.grad = g.clone()
        opt.step()
    for a, b in zip(sharded, ps):
        # Each update slot is written by one rank and zero on the other: the all-reduce sum is exact.
        assert torch.equal(a, b.detach())
