"""The eval methods on the project's GPT (crownq.model), not only on the stand-in."""

import pytest
import torch
from eval_standin import bytes_by_rule, hand_made_tables, random_stream
from oracles.sliding_reference import sliding_window_reference

from crownq.config.arch import ArchConfig
from crownq.config.eval import EvalConfig, TTTConfig
from crownq.distributed import DistEnv
from crownq.eval import roundtrip_eval, score_first_ttt, sliding_window_eval
from crownq.model import build_model

VOCAB = 128


def small_gpt():
    torch.manual_seed(0)
    arch = ArchConfig(vocab_size=VOCAB, num_layers=2, model_dim=64, num_heads=2, num_kv_heads=1,
                      tied_embed_init_std=0.5)  # a visible embedding so losses differ by context
    return build_model(arch).eval()


@pytest.fixture(scope="module")
def gpt():
    return small_gpt()


def test_sliding_on_gpt_equals_one_window_at_a_time(gpt):
    val, tables = random_stream(301, VOCAB, seed=11), hand_made_tables(VOCAB)
    fast = sliding_window_eval(gpt, val, tables, 64, 24, 4, DistEnv())
    ref = sliding_window_reference(gpt, val, tables, 64, 24)
    assert fast.tokens == ref.tokens == 300 and fast.bytes == ref.bytes == bytes_by_rule(val, tables)
    assert fast.val_bpb == pytest.approx(ref.val_bpb, rel=1e-6)


def test_gpt_stride_equal_to_seq_len_is_roundtrip(gpt):
    val, tables = random_stream(257, VOCAB, seed=12), hand_made_tables(VOCAB)
    sliding = sliding_window_eval(gpt, val, tables, 64, 64, 4, DistEnv())
    roundtrip = roundtrip_eval(gpt, val, tables, 64, 4, DistEnv())
    assert (sliding.val_loss, sliding.bytes) == (roundtrip.val_loss, roundtrip.bytes)


def test_ttt_on_a_fresh_gpt_with_frozen_blocks():
    # Fresh model: whatever it caches while scoring (RoPE tables) must not break the training that follows.
    gpt = small_gpt()
    val, tables = random_stream(257, VOCAB, seed=13), hand_made_tables(VOCAB)
    cfg = EvalConfig(seq_len=32, stride=16, batch_seqs=4,
                     ttt=TTTConfig(enabled=True, chunk_tokens=64, optimizer="adamw", lr=1e-3,
                                   frozen_blocks=1, batch_seqs=2))
    before = {k: v.clone() for k, v in gpt.state_dict().items()}
    result = score_first_ttt(gpt, val, tables, cfg, DistEnv())
    assert result.tokens == 256 and result.details["trained_chunks"] == result.details["chunks"] - 1 >= 2
    assert all(torch.equal(v, gpt.state_dict()[k]) for k, v in before.items())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_compiled_sliding_is_close_to_fp32_eager():
    gpt = small_gpt().cuda()
    val, tables = random_stream(1025, VOCAB, seed=14), hand_made_tables(VOCAB)
    fast = sliding_window_eval(gpt, val, tables, 128, 32, 8, DistEnv(device=torch.device("cuda")))
    plain = sliding_window_eval(gpt, val, tables, 128, 32, 8, DistEnv(device=torch.device("cuda")),
                                autocast="off", compile="off")
    assert fast.details["autocast"] and fast.details["compile"]
    assert (fast.tokens, fast.bytes) == (plain.tokens, plain.bytes)
    assert fast.val_bpb == pytest.approx(plain.val_bpb, rel=2e-2)
