"""Every `eval` option composes with the schema and runs end to end on a stand-in model."""

import os
from pathlib import Path

import pytest
import torch
from eval_standin import StandInLM, hand_made_tables, random_stream
from hydra import compose, initialize_config_dir

from crownq.config import register_configs
from crownq.distributed import DistEnv
from crownq.eval import headline, limit_validation_tokens, run_evaluation, total_seconds

REPO = Path(__file__).resolve().parents[2]
OPTIONS = sorted(p.stem for p in (REPO / "conf" / "eval").glob("*.yaml"))


def compose_config(*overrides):
    os.environ.setdefault("CROWNQ_ROOT", str(REPO))
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_the_expected_options_exist():
    assert {"roundtrip", "sliding64", "ttt_score_first"} <= set(OPTIONS)


# Per-document TTT attaches adapters to crownq's GPT, not to the stand-in: tests/eval/test_lora_ttt.py
# composes and runs those options.
@pytest.mark.parametrize("option", [o for o in OPTIONS if o not in ("lora_ttt", "phased_ttt")])
def test_option_composes_and_runs(option):
    cfg = compose_config(f"eval={option}", "eval.seq_len=32", "eval.batch_seqs=4",
                         "eval.ttt.chunk_tokens=64", "eval.ttt.epochs=1", "eval.max_val_tokens=200")
    stride = cfg.eval.stride if cfg.eval.stride <= 32 else 32  # the long-stride options, shrunk
    cfg.eval.stride = stride
    results = run_evaluation(StandInLM(96, dim=16, max_len=64).eval(), random_stream(400, 96),
                             hand_made_tables(96), cfg.eval, DistEnv())
    expected = {"roundtrip"} if cfg.eval.roundtrip else set()
    expected |= {"sliding"} if cfg.eval.sliding else set()
    expected |= {"ttt"} if cfg.eval.ttt.enabled else set()
    assert set(results) == expected and expected
    for result in results.values():
        assert result.tokens == 192  # max_val_tokens=200 rounded down to whole sequences of 32
        assert result.within_budget and result.seconds > 0
    assert total_seconds(results) == pytest.approx(sum(r.seconds for r in results.values()))


def test_seq_len_follows_the_training_seq_len():
    assert compose_config("eval=sliding64", "train.seq_len=512").eval.seq_len == 512
    cfg = compose_config("eval=ttt_score_first", "train=record_8xh100")
    assert (cfg.eval.seq_len, cfg.eval.stride) == (2048, 64)


def test_typo_in_eval_option_fails_at_composition():
    with pytest.raises(Exception, match="strid"):
        compose_config("eval.strid=32")


def test_headline_prefers_ttt_then_sliding():
    cfg = compose_config("eval=ttt_score_first", "eval.seq_len=32", "eval.stride=16", "eval.batch_seqs=4",
                         "eval.ttt.chunk_tokens=64")
    results = run_evaluation(StandInLM(96, dim=16, max_len=64).eval(), random_stream(193, 96),
                             hand_made_tables(96), cfg.eval, DistEnv())
    assert headline(results) is results["ttt"]
    del results["ttt"]
    assert headline(results) is results["sliding"]


def test_limit_validation_tokens_keeps_whole_sequences():
    val = torch.arange(1001)
    assert torch.equal(limit_validation_tokens(val, 0, 64), val)
    assert limit_validation_tokens(val, 300, 64).numel() == 4 * 64 + 1
    with pytest.raises(ValueError, match="eval.max_val_tokens=10 is less than one sequence of 64"):
        limit_validation_tokens(val, 10, 64)
