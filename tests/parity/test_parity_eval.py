"""Byte accounting and scoring against the record's own numbers (../shared/data/ref_golden/eval_small.pt).

The record's sliding-window plan is not exactly-once (its short tail windows score the final targets
again); crownq's is. To test the scoring arithmetic on the record's numbers, the record's plan is built
here and scored with crownq's own window scorer; crownq's exactly-once plan is checked to differ.
"""

from __future__ import annotations

import math

import pytest
import torch

from crownq.data.byte_tables import byte_tables_from_sentencepiece
from crownq.distributed import DistEnv
from crownq.eval.roundtrip import roundtrip_eval
from crownq.eval.scoring import resolve_runtime, result_from_sums, score_windows
from crownq.eval.sliding import sliding_window_eval
from crownq.eval.windows import WindowPlan
from tests.parity.golden import REF_GOLDEN, build_golden_model, load_golden

pytestmark = pytest.mark.shared_data
TOKENIZER = REF_GOLDEN.parent / "fineweb_1024_bpe.model"


@pytest.fixture(scope="module")
def golden():
    return load_golden("eval_small.pt")


@pytest.fixture(scope="module")
def model():
    return build_golden_model(load_golden("model_small.pt")).eval()


@pytest.fixture(scope="module")
def tables():
    if not TOKENIZER.is_file():
        pytest.skip(f"published tokenizer {TOKENIZER} is absent")
    return byte_tables_from_sentencepiece(TOKENIZER, 1024)


def test_byte_tables_equal_the_record(golden, tables):
    assert torch.equal(tables.base_bytes, golden["base_bytes"].long())
    assert torch.equal(tables.has_leading_space, golden["has_leading_space"])
    assert torch.equal(tables.is_boundary, golden["is_boundary"])


def _agree(result, expected: torch.Tensor) -> None:
    loss, bpb = expected.tolist()
    assert result.val_loss == pytest.approx(loss, rel=1e-6, abs=0)
    assert result.val_bpb == pytest.approx(bpb, rel=1e-6, abs=0)


def test_roundtrip_matches_the_record(golden, model, tables):
    seq_len = int(golden["seq_len"])
    tokens = golden["val_tokens"]
    trimmed = tokens[:((tokens.numel() - 1) // seq_len) * seq_len + 1]  # the tail is not scored
    result = roundtrip_eval(model, trimmed, tables, seq_len, batch_seqs=3, dist_env=DistEnv())
    _agree(result, golden["roundtrip"])


def record_window_plan(num_targets: int, seq_len: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, length, first scored offset) of each window of the record's sliding evaluation."""
    windows = []
    for start in range(0, num_targets, stride):
        length = min(start + seq_len, num_targets) - start
        if length < 1:
            break
        windows.append((start, length, 0 if start == 0 else max(length - stride, 0)))
    return windows


@pytest.mark.parametrize("stride", [32, 64])
def test_sliding_arithmetic_on_the_record_plan(golden, model, tables, stride):
    seq_len, tokens = int(golden["seq_len"]), golden["val_tokens"]
    plan = record_window_plan(tokens.numel() - 1, seq_len, stride)
    runtime = resolve_runtime(torch.device("cpu"), "off", "off")
    sums = torch.zeros(3, dtype=torch.float64)
    for start, length, lo in plan:  # windows of several lengths: one crownq WindowPlan per window
        one = WindowPlan(torch.tensor([start]), torch.tensor([lo]), length)
        sums += score_windows(model.per_token_loss, tokens, tables, one, 1, runtime)
    assert int(sums[1]) == int(golden[f"sliding{stride}_scored_targets"])
    _agree(result_from_sums(sums, 0.0, "record_plan", 600.0), golden[f"sliding{stride}"])


@pytest.mark.parametrize("stride", [32, 64])
def test_crownq_plan_scores_each_target_once_and_so_differs(golden, model, tables, stride):
    seq_len, tokens = int(golden["seq_len"]), golden["val_tokens"]
    ours = sliding_window_eval(model, tokens, tables, seq_len, stride, batch_seqs=4, dist_env=DistEnv())
    assert ours.tokens == tokens.numel() - 1
    assert not math.isclose(ours.val_bpb, float(golden[f"sliding{stride}"][1]), rel_tol=1e-6)
