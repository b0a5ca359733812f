"""The frontier preset's parameter accounting (spec §2) and the training-FLOPs lines of crownq-describe."""

from __future__ import annotations

import pytest

from crownq.describe import describe
from crownq.model import build_model
from crownq.model.flops import training_flops_per_token
from tests.frontier.helpers import tiny_frontier


def test_frontier_11l_has_the_records_parameter_count_and_groups():
    out = describe(["arch=frontier_11l", "data.vocab_size=8192", "train=frontier_8xh100"])
    assert "model_params: 35945671" in out.splitlines()
    rows = [line.split() for line in out.splitlines() if line.startswith("optimizer group")]
    groups = {row[2]: row[3] for row in rows}
    assert groups == {"matrix": "31,719,424", "embed": "4,194,304", "head": "0", "scalar": "31,943"}
    assert "train_flops_per_token (looping on):" in out and "per step (786,432 tokens at seq 2048)" in out


def test_flops_count_the_looped_layers_and_the_head():
    model = build_model(tiny_frontier(num_loops=2))
    cfg = model.cfg
    off = training_flops_per_token(model, 64, looping=False)
    on = training_flops_per_token(model, 64, looping=True)
    block = model.blocks[1]
    weights = sum(m.weight.numel() for m in (block.attn.q_proj, block.attn.k_proj, block.attn.v_proj,
                                              block.attn.out_proj, block.mlp.fc, block.mlp.proj))
    per_layer = 3 * (2 * weights + 4 * cfg.model_dim * 65 / 2)
    assert on - off == pytest.approx(4 * per_layer)  # layers 1-2 run twice more: 4 extra applications
    head = 3 * 2 * cfg.vocab_size * cfg.model_dim
    assert off == pytest.approx(4 * per_layer + head)
