"""crownq's GPT, late QAT and CROWN-Q against the record's own outputs (../shared/data/ref_golden).

The record's weights are loaded under crownq's names (tests/parity/golden.py holds the one name map);
losses, logits and gradients must agree to float tolerance.
"""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from crownq.config.quantizer import QuantizerConfig
from crownq.model.layers import rope_base_for_length
from crownq.train.step_parts import crownq_term, qat_bits_for, qat_modules, qat_phase, set_fake_quant
from tests.parity.golden import build_golden_model, load_golden, record_module_name

pytestmark = pytest.mark.shared_data
RTOL = 1e-5


@pytest.fixture(scope="module")
def golden():
    torch.manual_seed(0)
    return load_golden("model_small.pt")


def _record_qcfg(**overrides):
    return OmegaConf.structured(QuantizerConfig(**overrides))


def _close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    scale = expected.abs().max().clamp_min(1e-12)
    err = (actual - expected).abs().max() / scale
    assert err <= rtol, f"max |diff| / max |expected| = {err:.3e} > {rtol}"


def test_eval_loss_and_logits_match_the_record(golden):
    model = build_golden_model(golden).eval()
    with torch.no_grad():
        loss = model(golden["input_ids"], golden["target_ids"])
        logits = model.logits(golden["input_ids"])
    assert abs(loss.item() - golden["loss"].item()) <= RTOL * golden["loss"].item()
    _close(logits, golden["logits"])


def test_long_sequence_uses_the_record_length_scaled_rope_base(golden):
    """1,100 tokens > the record's 1,024-token rotary reference: the base is raised with the length."""
    model = build_golden_model(golden).eval()
    with torch.no_grad():
        loss = model(golden["long_input_ids"], golden["long_target_ids"])
        last = model.logits(golden["long_input_ids"])[:, -16:]
    assert abs(loss.item() - golden["long_loss"].item()) <= RTOL * golden["long_loss"].item()
    _close(last, golden["long_logits_last16"])
    # The departure (fixed base) computes a different function on the same input: the switch matters.
    fixed = build_golden_model(golden, rope_ref_len=0).eval()
    with torch.no_grad():
        moved = fixed.logits(golden["long_input_ids"])[:, -16:] - golden["long_logits_last16"]
    assert moved.abs().max() > 1e-3


def test_record_rope_base_at_2048_tokens():
    assert rope_base_for_length(10000.0, 16, 2048, 1024) == pytest.approx(22081.79, abs=0.01)
    assert rope_base_for_length(10000.0, 16, 1024, 1024) == 10000.0
    assert rope_base_for_length(10000.0, 16, 2048, 0) == 10000.0


def test_training_loss_and_gradient_without_qat(golden):
    model = build_golden_model(golden).train()
    loss = model(golden["input_ids"], golden["target_ids"])
    loss.backward()
    assert abs(loss.item() - golden["train_noqat.loss"].item()) <= RTOL * 8
    _close(model.blocks[0].attn.q_proj.weight.grad, golden["train_noqat.grad.blocks.0.attn.c_q.weight"])


@pytest.mark.parametrize("tau", ["1000", "0.1"])
def test_late_qat_loss_and_gradients_match_the_record(golden, tau):
    """The record's QAT: int6 grid with row scales floored at 1/31 on every linear; gradients are plain
    straight-through at both temperatures (its soft-round term is detached)."""
    model = build_golden_model(golden).train()
    qcfg = _record_qcfg()
    phase = qat_phase(0.01 if tau == "0.1" else 0.1, qcfg, previous="ste")
    set_fake_quant(model, phase, qcfg, qat_bits_for(model, qcfg))
    loss = model(golden["input_ids"], golden["target_ids"])
    loss.backward()
    prefix = f"qat_tau{tau}"
    assert abs(loss.item() - golden[f"{prefix}.loss"].item()) <= RTOL * 8
    params = dict(model.named_parameters())
    names = [k for k in golden if k.startswith(f"{prefix}.grad.")]
    assert len(names) == 10
    for key in names:
        record_param = key[len(f"{prefix}.grad."):]
        ours = params[record_module_name(record_param.removesuffix(".weight")) + ".weight"].grad
        _close(ours, golden[key], rtol=1e-4)


def test_soft_round_gradient_is_a_named_departure(golden):
    """qat_gradient=soft_round changes the gradients at temperature 0.1 (not the loss)."""
    model = build_golden_model(golden).train()
    qcfg = _record_qcfg(qat_gradient="soft_round")
    set_fake_quant(model, qat_phase(0.01, qcfg, previous="ste"), qcfg, qat_bits_for(model, qcfg))
    loss = model(golden["input_ids"], golden["target_ids"])
    loss.backward()
    assert abs(loss.item() - golden["qat_tau0.1.loss"].item()) <= RTOL * 8
    grad = model.blocks[4].attn.q_proj.weight.grad
    assert (grad - golden["qat_tau0.1.grad.blocks.4.attn.c_q.weight"]).abs().max() > 1e-4


def test_qat_is_training_mode_only(golden):
    model = build_golden_model(golden)
    qcfg = _record_qcfg()
    set_fake_quant(model, "ste", qcfg, qat_bits_for(model, qcfg))
    model.eval()
    with torch.no_grad():
        assert model(golden["input_ids"], golden["target_ids"]).item() == pytest.approx(golden["loss"].item(),
                                                                                        rel=RTOL)


def test_crownq_term_and_its_module_set(golden):
    model = build_golden_model(golden)
    qcfg = _record_qcfg(crownq_lambda=1.0)
    names = {name for name, _ in qat_modules(model, qcfg)}
    expected = {record_module_name(n) for n in json.loads(golden["crownq_penalty_modules"])}
    assert names == expected
    assert crownq_term(model, qcfg).item() == pytest.approx(golden["crownq_penalty"].item(), rel=RTOL)
    blocks_only = _record_qcfg(crownq_lambda=1.0, qat_coverage="blocks")
    assert len(qat_modules(model, blocks_only)) == len(expected) - 2
