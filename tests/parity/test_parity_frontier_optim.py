"""MuonEq-R with Polar Express, the LR table and the training fraction against the frontier record
(../shared/data/frontier_golden/optim_small.pt)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from crownq.train.muon import POLAR_EXPRESS_COEFFICIENTS, Muon, newton_schulz_orthogonalize
from crownq.train.optim import muon_momentum_at
from crownq.train.schedule import frac_lr_mul, lr_scale, training_frac
from tests.parity.frontier_golden import load_frontier_golden

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def golden():
    return load_frontier_golden("optim_small.pt")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_polar_express_coefficients(golden):
    assert torch.equal(torch.tensor(POLAR_EXPRESS_COEFFICIENTS, dtype=torch.float64), golden["pe_coeffs"])


@pytest.mark.parametrize("shape", ["wide", "tall", "batched"])
def test_standalone_polar_express_newton_schulz(golden, shape):
    """bf16 kernels round differently between builds: README allows ~1e-2; measured here 0 (wide),
    1.5e-2 (tall) and <= 2e-3 per slice (batched); the quintic would be far off."""
    x, expected = golden[f"ns.{shape}.in"], golden[f"ns.{shape}.out"]
    slices = [(x[i], expected[i]) for i in range(x.size(0))] if x.ndim == 3 else [(x, expected)]
    for inp, out in slices:
        ours = newton_schulz_orthogonalize(inp, 5, dtype=torch.bfloat16, variant="polar_express")
        assert _rel(ours, out) < 2e-2
        assert _rel(newton_schulz_orthogonalize(inp, 5, dtype=torch.bfloat16), out) > 5e-2


def _parts(golden, key):
    # The record's bank p3 [2, 96, 64] is two matrices, each row-normalised and orthogonalised alone.
    return [golden[key.format("p1")], golden[key.format("p2")], *golden[key.format("p3")].unbind(0)]


def _muon(golden, params, ns_dtype: str, row_normalize: bool = True) -> Muon:
    cfg = json.loads(golden["config"])
    return Muon(params, lr=cfg["lr"], momentum=cfg["momentum"], backend_steps=cfg["backend_steps"],
                weight_decay=cfg["weight_decay"], nesterov=cfg["nesterov"], ns_dtype=ns_dtype,
                row_normalize=row_normalize and cfg["row_normalize"], ns_variant="polar_express")


def _step(golden, params, opt, step: int) -> None:
    for p, g in zip(params, _parts(golden, f"step{step}.{{}}.grad")):
        p.grad = g.clone()
    opt.step()


def _run_three_steps(golden, ns_dtype: str) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    params = [torch.nn.Parameter(t.clone()) for t in _parts(golden, "{}.init")]
    opt = _muon(golden, params, ns_dtype)
    for step in range(3):
        _step(golden, params, opt, step)
    buffers = [opt.state[p]["momentum_buffer"] for p in params]
    return list(zip([p.detach() for p in params], _parts(golden, "{}.final"), buffers))


def test_three_muoneq_r_polar_express_steps(golden):
    """README: ~1e-3 expected, 2e-3 allowed. Measured on this CPU: 5.2e-4 (p1), 3.5e-4 (p2), 1.7e-3 and
    9.9e-4 (the two p3 slices; the tall NS alone is 1.5e-2 off, bf16 matmul rounding). That needs the
    record's dtypes: bf16 gradient, bf16 momentum buffer and Nesterov sum, and the row normalisation
    dividing the bf16 u by its bf16-rounded fp32 norms. With the momentum in fp32, or the division done in
    fp32 and rounded afterwards, it was 3.1e-3 .. 4.7e-3; a float32 Newton-Schulz gives 3.0e-3 .. 4.8e-3."""
    buffers = _parts(golden, "{}.momentum_buffer")
    for (ours, final, buf), expected_buf in zip(_run_three_steps(golden, "bf16"), buffers):
        assert _rel(ours, final) < 2e-3
        assert buf.dtype == torch.bfloat16 and torch.equal(buf.float(), expected_buf)
    assert max(_rel(ours, final) for ours, final, _ in _run_three_steps(golden, "fp32")) > 2e-3


def test_resuming_keeps_the_bf16_momentum_exact(golden):
    """load_state_dict casts optimizer state to the parameter's dtype (fp32); the bf16 buffer comes back
    bit-exact, so a resumed run takes the same step as an uninterrupted one."""
    params = [torch.nn.Parameter(t.clone()) for t in _parts(golden, "{}.init")]
    opt = _muon(golden, params, "bf16")
    for step in range(2):
        _step(golden, params, opt, step)
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt2 = _muon(golden, resumed, "bf16")
    opt2.load_state_dict(opt.state_dict())
    _step(golden, params, opt, 2)
    _step(golden, resumed, opt2, 2)
    for a, b in zip(params, resumed):
        assert torch.equal(a, b)
        assert opt2.state[b]["momentum_buffer"].dtype == torch.bfloat16


def test_muoneq_r_is_what_makes_the_steps_match(golden):
    p = torch.nn.Parameter(golden["p1.init"].clone())
    opt = _muon(golden, [p], "bf16", row_normalize=False)
    for step in range(3):
        p.grad = golden[f"step{step}.p1.grad"].clone()
        opt.step()
    assert _rel(p.detach(), golden["p1.final"]) > 7e-3  # measured 9.7e-3 without, 5.2e-4 with MuonEq-R


def test_lr_table(golden):
    wf, floor = float(golden["lr_schedule.warmdown_frac"]), float(golden["lr_schedule.min_lr"])
    for frac, mul in zip(golden["lr_schedule.frac"].tolist(), golden["lr_schedule.mul"].tolist()):
        assert frac_lr_mul(frac, wf, floor) == pytest.approx(mul, abs=1e-12)


def test_training_frac_and_time_based_schedule(golden):
    """The frontier's frac = elapsed / (600 s - 0.5 s GPTQ reserve) = crownq's effective cap."""
    cap_ms = float(golden["training_frac.max_wallclock_ms"])
    tcfg = SimpleNamespace(max_wallclock_seconds=600.0, calibration_reserve_seconds=600.0 - cap_ms / 1000,
                           burst_steps=0, iterations=20000, warmdown_frac=0.85, min_lr=0.1, warmdown_iters=0)
    for ms, frac in zip(golden["training_frac.elapsed_ms"].tolist(), golden["training_frac.frac"].tolist()):
        assert training_frac(100, ms / 1000, tcfg) == pytest.approx(frac, abs=1e-12)
        assert lr_scale(100, ms / 1000, tcfg) == pytest.approx(frac_lr_mul(frac, 0.85, 0.1), abs=1e-12)


def test_muon_momentum_warmup(golden):
    tcfg = SimpleNamespace(muon_momentum=0.97, muon_momentum_warmup_start=0.92,
                           muon_momentum_warmup_steps=1500)
    for step, value in zip(golden["muon_momentum.step"].tolist(), golden["muon_momentum.value"].tolist()):
        assert muon_momentum_at(int(step), tcfg) == pytest.approx(value, abs=1e-12)
