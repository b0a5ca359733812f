"""Training-time validation charges the byte sidecar (CaseOps data) by stream position, like the scores."""

from __future__ import annotations

import math

import torch

from crownq.data.byte_tables import ByteTables
from crownq.distributed import DistEnv
from crownq.train.step_parts import validate


class ConstantLoss(torch.nn.Module):
    """Every target costs 1 nat, so val_bpb = tokens / (ln 2 * bytes charged)."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def per_token_loss(self, x, y):
        return torch.ones_like(y, dtype=torch.float32)


def test_validation_charges_the_sidecar_of_each_target_position():
    vocab, seq_len = 16, 8
    g = torch.Generator().manual_seed(0)
    val = torch.randint(0, vocab, (4 * seq_len + 1,), generator=g)
    sidecar = torch.randint(0, 5, (val.numel(),), generator=g)
    tables = ByteTables(torch.ones(vocab, dtype=torch.long), torch.zeros(vocab, dtype=torch.bool),
                        torch.zeros(vocab, dtype=torch.bool), sidecar)
    loss, bpb = validate(ConstantLoss(), val, tables, seq_len, batch_seqs=3, max_tokens=0,
                         dist_env=DistEnv(), autocast_mode="off")
    charged = int(sidecar[1:].sum())  # targets are stream positions 1..N
    assert loss == 1.0
    assert math.isclose(bpb, (val.numel() - 1) / math.log(2) / charged, rel_tol=1e-12)
    _, token_rule = validate(ConstantLoss(), val, tables.without_sidecar(), seq_len, 3, 0, DistEnv(), "off")
    assert math.isclose(token_rule, 1 / math.log(2), rel_tol=1e-12)  # 1 byte per token without it
