"""Self-generated calibration: sequences come from the model's own distribution, starting at BOS."""

import pytest
import torch

from crownq.quant.self_generated import generate_calibration_batches

VOCAB = 11


def successor_logits(tokens: torch.Tensor) -> torch.Tensor:
    """A 'model' that is certain the next token is (current + 1) mod VOCAB."""
    logits = torch.full((*tokens.shape, VOCAB), -1e4)
    logits.scatter_(-1, ((tokens + 1) % VOCAB).unsqueeze(-1), 1e4)
    return logits


def uniform_logits(tokens: torch.Tensor) -> torch.Tensor:
    return torch.zeros(*tokens.shape, VOCAB)


def test_sequences_follow_the_model_from_bos():
    batches = list(generate_calibration_batches(successor_logits, num_batches=2, batch_seqs=3, seq_len=7,
                                                bos_id=1))
    assert len(batches) == 2
    expected = (torch.arange(7) + 1) % VOCAB
    for b in batches:
        assert b.shape == (3, 7) and b.dtype == torch.long
        assert torch.equal(b, expected.expand(3, 7))


def test_sampling_is_seeded_and_uses_the_whole_distribution():
    a = torch.cat(list(generate_calibration_batches(uniform_logits, 4, 8, 16, seed=5)))
    b = torch.cat(list(generate_calibration_batches(uniform_logits, 4, 8, 16, seed=5)))
    c = torch.cat(list(generate_calibration_batches(uniform_logits, 4, 8, 16, seed=6)))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # 32 x 15 uniform draws over 11 ids: every id appears (a missing one has probability ~1e-9 * 11).
    assert set(a[:, 1:].unique().tolist()) == set(range(VOCAB))


@pytest.mark.parametrize("kwargs, culprit", [
    ({"num_batches": 0}, "num_batches=0"),
    ({"seq_len": 0}, "seq_len=0"),
    ({"temperature": 0.0}, "calibration_temperature"),
])
def test_bad_settings_name_the_culprit(kwargs, culprit):
    args = {"num_batches": 1, "batch_seqs": 1, "seq_len": 4} | kwargs
    temperature = args.pop("temperature", 0.8)
    with pytest.raises(ValueError, match=culprit):
        list(generate_calibration_batches(uniform_logits, temperature=temperature, **args))


def test_hessians_from_generated_text_of_a_real_model():
    from crownq.config import ArchConfig
    from crownq.model import build_model
    from crownq.quant.calibrate import collect_hessians

    model = build_model(ArchConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1))
    batches = generate_calibration_batches(model.logits, num_batches=2, batch_seqs=2, seq_len=8)
    hessians = collect_hessians(model, batches, progress=False)
    names = {f"{prefix}.weight" for prefix, _ in model.quantizable_linears()}
    assert set(hessians) == names
    for h in hessians.values():
        assert torch.allclose(h, h.T) and h.diagonal().min() >= 0
