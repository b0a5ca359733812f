"""The record-fidelity switches of training: QAT phase and coverage, CROWN-Q window, Muon's NS dtype."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from crownq.config.quantizer import QuantizerConfig
from crownq.train.muon import Muon, ns_dtype_for
from crownq.train.step_parts import crownq_active, qat_bits_for, qat_modules, qat_phase, set_fake_quant
from tests.model.model_helpers import build


def qcfg(**overrides):
    return OmegaConf.structured(QuantizerConfig(**overrides))


def test_late_qat_switches_on_below_the_threshold_and_stays_on():
    q = qcfg()
    assert qat_phase(0.2, q) == "off"
    assert qat_phase(0.1, q) == "ste"
    assert qat_phase(0.16, q, previous="ste") == "ste"  # a wallclock scale wobbling up keeps QAT on
    assert qat_phase(0.01, q, previous="ste") == "ste"  # record: straight-through to the end
    assert qat_phase(0.01, qcfg(qat_gradient="soft_round"), previous="ste") == "soft"
    assert qat_phase(0.01, qcfg(qat=False), previous="ste") == "off"


@pytest.mark.parametrize("window, expected", [
    ("qat", [False, False, True]),  # (scale 1, QAT off), (scale 0.5, QAT off), (scale 0.1, QAT on)
    ("warmdown", [False, True, True]),
    ("always", [True, True, True]),
])
def test_crownq_window(window, expected):
    q = qcfg(crownq_window=window)
    got = [crownq_active(1.0, q, qat_on=False), crownq_active(0.5, q, qat_on=False),
           crownq_active(0.1, q, qat_on=True)]
    assert got == expected
    assert not crownq_active(0.1, qcfg(crownq_window=window, crownq_lambda=0.0), qat_on=True)


def test_a_bad_crownq_window_names_the_field():
    with pytest.raises(ValueError, match="quantizer.crownq_window"):
        crownq_active(0.5, qcfg(crownq_window="sometimes"), qat_on=True)


def test_qat_coverage_includes_the_side_projections_on_the_attention_grid():
    model = build(orthogonal_min_dim=8)
    everything = dict(qat_modules(model, qcfg()))
    blocks = dict(qat_modules(model, qcfg(qat_coverage="blocks")))
    assert set(everything) - set(blocks) == {"bigram.proj", "value_embed.proj"}
    bits = qat_bits_for(model, qcfg(attn_bits=5, mlp_bits=6))
    assert bits["bigram.proj"] == bits["value_embed.proj"] == 5 and bits["blocks.0.mlp.fc"] == 6
    set_fake_quant(model, "ste", qcfg(), qat_bits_for(model, qcfg()))
    assert model.bigram.proj.fake_quant.floor == pytest.approx(1 / 31)
    set_fake_quant(model, "ste", qcfg(scale_floor="tiny"), qat_bits_for(model, qcfg()))
    assert model.bigram.proj.fake_quant.floor == pytest.approx(2.0 ** -14)


def test_record_qat_grid_is_coarser_for_small_rows():
    """max(row_max/31, 1/31): a row whose max is 0.31 is quantised with step 1/31, not 0.01."""
    from crownq.quant.fake_quant import make_fake_quant

    w = torch.linspace(-0.31, 0.31, 63).repeat(2, 1)
    record = make_fake_quant(6, floor=1 / 31)(w)
    fine = make_fake_quant(6)(w)
    assert torch.unique(record).numel() < torch.unique(fine).numel()
    assert torch.allclose(record, torch.round(w * 31) / 31)


def test_muon_ns_dtype_names_the_field_and_auto_is_device_dependent():
    assert ns_dtype_for("auto", torch.device("cpu")) == torch.float32
    assert ns_dtype_for("auto", torch.device("cuda")) == torch.bfloat16
    assert ns_dtype_for("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="train.muon_ns_dtype"):
        Muon([torch.nn.Parameter(torch.zeros(2, 2))], lr=0.1, momentum=0.9, ns_dtype="fp8")


def test_place_keeps_fp32_tables_on_cpu():
    model = build().place("cpu")
    assert all(t.dtype == torch.float32 for t in model.embedding_tables())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_place_on_cuda_keeps_the_record_dtypes():
    model = build().place("cuda")
    assert all(t.dtype == torch.bfloat16 for t in model.embedding_tables())
    assert model.blocks[0].attn.q_proj.weight.dtype == torch.float32
    fp32 = build(cuda_embedding_dtype="fp32").place("cuda")
    assert all(t.dtype == torch.float32 for t in fp32.embedding_tables())
