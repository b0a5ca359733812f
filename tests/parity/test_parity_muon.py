"""Three Muon steps against the record's (../shared/data/ref_golden/muon_small.pt).

The record runs Newton-Schulz and stores its updates in bfloat16 on every device (crownq:
`train.muon_ns_dtype: bf16`); bf16 matmul kernels differ between builds, so agreement is to bf16
tolerance, measured on the change the three steps made. (A plain bf16 re-implementation of the record's
steps lands 0.7% from its file on this CPU; fp32 Newton-Schulz 2.1%.)
"""

from __future__ import annotations

import pytest
import torch

from crownq.train.muon import Muon
from tests.parity.golden import load_golden

pytestmark = pytest.mark.shared_data


def test_three_muon_steps_match_the_record():
    g = load_golden("muon_small.pt")
    p1 = torch.nn.Parameter(g["p1.init"].clone())
    p2 = torch.nn.Parameter(g["p2.init"].clone())
    opt = Muon([p1, p2], lr=float(g["lr"]), momentum=float(g["momentum"]),
               backend_steps=int(g["backend_steps"]), weight_decay=float(g["weight_decay"]), nesterov=True,
               ns_dtype="bf16")
    for step in range(3):
        p1.grad, p2.grad = g[f"step{step}.g1"].clone(), g[f"step{step}.g2"].clone()
        opt.step()
    for ours, init, final in ((p1, g["p1.init"], g["p1.final"]), (p2, g["p2.init"], g["p2.final"])):
        moved_record = final - init
        err = ((ours.detach() - init) - moved_record).norm() / moved_record.norm()
        assert err < 1e-2, f"Muon update differs from the record's by {err:.2e} (relative, Frobenius)"
        # elementwise: bf16 rounding (2^-8 relative) of an update of size ~lr, three times
        assert (ours.detach() - final).abs().max() <= 5e-3 * final.abs().max()
