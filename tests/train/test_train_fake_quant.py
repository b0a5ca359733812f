"""Per-row RTN, fake quantisation for late QAT and the CROWN-Q penalty."""

import math

import pytest
import torch

from crownq.quant.fake_quant import crownq_penalty, make_fake_quant, max_code, rtn_per_row, soft_round


def rtn_reference(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row by row, element by element: the definition, no vectorisation."""
    qmax = 2 ** (bits - 1) - 1
    q = torch.zeros(w.shape, dtype=torch.int8)
    scales = torch.zeros(w.shape[0])
    for r in range(w.shape[0]):
        scale = max(float(w[r].abs().max()) / qmax, 1e-12)
        scales[r] = scale
        for c in range(w.shape[1]):
            q[r, c] = int(max(-qmax, min(qmax, round(float(w[r, c]) / scale))))
    return q, scales


@pytest.mark.parametrize("bits", [4, 6, 8])
def test_rtn_per_row_matches_elementwise_reference(bits):
    g = torch.Generator().manual_seed(bits)
    w = torch.randn(7, 13, generator=g)
    torch.manual_seed(bits)
    if bits == 6:  # trained-like heavy tails
        w = torch.distributions.Laplace(0.0, 0.3).sample((7, 13))
    w[3] = 0.0  # a zero row must give codes 0, not NaN
    q, scale = rtn_per_row(w, bits)
    q_ref, scale_ref = rtn_reference(w, bits)
    assert q.dtype == torch.int8 and scale.shape == (7,)
    torch.testing.assert_close(scale, scale_ref, rtol=1e-6, atol=0)
    # Python's round() and torch.round() both round half to even; ties are measure-zero here anyway.
    assert torch.equal(q, q_ref)
    assert int(q.abs().max()) == max_code(bits)  # each non-zero row's max hits the top code


@pytest.mark.parametrize("bits", [6, 8])
@pytest.mark.parametrize("temperature", [None, 0.1])
def test_fake_quant_forward_equals_rtn_dequantised(bits, temperature):
    w = torch.randn(16, 24, generator=torch.Generator().manual_seed(0)) * 0.7
    q, scale = rtn_per_row(w, bits)
    out = make_fake_quant(bits, temperature)(w)
    assert torch.equal(out, q.float() * scale[:, None])


def test_fake_quant_int6_grid_is_31_levels_each_side():
    w = torch.tensor([[0.31, -0.155, 0.01, 0.0049]])
    out = make_fake_quant(6)(w)
    # scale = 0.31 / 31 = 0.01: 0.155 -> -15.5 -> -16 (half to even), 0.0049 -> 0.49 -> 0
    torch.testing.assert_close(out, torch.tensor([[0.31, -0.16, 0.01, 0.0]]))


def test_straight_through_gradient_is_identity():
    w = torch.randn(5, 9, requires_grad=True)
    upstream = torch.randn(5, 9)
    (make_fake_quant(6)(w) * upstream).sum().backward()
    torch.testing.assert_close(w.grad, upstream)


def test_soft_round_gradient_matches_its_formula():
    t = 0.1
    w = torch.randn(4, 6, generator=torch.Generator().manual_seed(1), requires_grad=True)
    make_fake_quant(6, t)(w).sum().backward()
    x = w.detach() / (w.detach().abs().amax(dim=1, keepdim=True) / 31)
    frac = x - torch.floor(x)
    s = torch.sigmoid((frac - 0.5) / t)
    torch.testing.assert_close(w.grad, s * (1 - s) / t, rtol=1e-4, atol=1e-6)


def test_soft_round_tends_to_round_and_stays_monotone():
    x = torch.linspace(-3.3, 3.3, 101)
    assert torch.allclose(soft_round(x, 1e-3), torch.round(x), atol=1e-3)
    assert torch.all(torch.diff(soft_round(x, 0.3)) > 0)


def test_crownq_penalty_on_hand_computed_matrices():
    w1 = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    # row 0: mean(w^2) = 2.5, step = 2/2 = 1   -> 2.5 * 1 / 12    = 0.2083333
    # row 1: mean(w^2) = 4.5, step = 3/2 = 1.5 -> 4.5 * 2.25 / 12 = 0.84375
    assert crownq_penalty([w1], divisor=2.0).item() == pytest.approx(0.2083333333 + 0.84375, rel=1e-6)
    w2 = torch.tensor([[0.0, 0.0, -6.0]])  # mean 12, step 3 -> 12 * 9 / 12 = 9
    assert crownq_penalty([w1, w2], divisor=2.0).item() == pytest.approx(1.0520833333 + 9.0, rel=1e-6)


def test_crownq_penalty_gradient_matches_finite_differences():
    w = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: crownq_penalty([m], 15.0).double(), (w,))


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="2-D"):
        rtn_per_row(torch.zeros(3), 6)
    with pytest.raises(ValueError, match="bits"):
        make_fake_quant(9)
    with pytest.raises(ValueError, match="crownq_divisor"):
        crownq_penalty([torch.ones(2, 2)], 0.0)
    assert math.isclose(max_code(6), 31)
