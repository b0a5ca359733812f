"""eval=phased_ttt: phase boundaries, cumulative training sets of scored documents, global SGD."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from eval_standin import hand_made_tables
from test_lora_ttt import VOCAB, lora_cfg, perturbation_leaks, stream, tiny_gpt

import crownq.eval.phased_ttt as phased_module
from crownq.config.eval import PhasedTTTConfig
from crownq.distributed import DistEnv
from crownq.eval import ScoreFirstViolation, run_evaluation
from crownq.eval.documents import plan_batches, split_documents
from crownq.eval.lora_ttt import lora_ttt_eval
from crownq.eval.phased_ttt import concatenate_documents, phase_boundaries, phase_documents, phased_ttt_eval


def phased_cfg(**changes):
    pt = dict(enabled=True, prefix_docs=6, phases=3, lr=0.05, chunk_tokens=32, seq_len=16)
    pt.update(changes)
    return dataclasses.replace(lora_cfg(), phased_ttt=PhasedTTTConfig(**pt))


def test_the_frontier_boundaries():
    assert phase_boundaries(2500, 3) == [833, 1666, 2500]
    with pytest.raises(ValueError, match="prefix_docs and phases must be positive"):
        phase_boundaries(0, 3)
    # Fewer documents than phases: the first phase would train on none (an empty stream crashed here).
    with pytest.raises(ValueError, match="prefix_docs=2 < phases=3"):
        phase_boundaries(2, 3)


def test_fewer_prefix_documents_than_phases_is_refused_before_training():
    from crownq.config.validate import problems
    from tests.pipeline.pipeline_compose import compose_run_config

    cfg = compose_run_config(["logger=none", "eval=phased_ttt", "eval.phased_ttt.prefix_docs=2"])
    assert any("eval.phased_ttt.prefix_docs=2: expected at least eval.phased_ttt.phases=3" in p
               for p in problems(cfg))
    fine = compose_run_config(["logger=none", "eval=phased_ttt", "eval.phased_ttt.prefix_docs=3"])
    assert not problems(fine)


def test_training_set_is_the_shortest_scored_documents_in_batch_order():
    tokens = torch.cat([torch.tensor([1] + [9] * n) for n in (5, 2, 9, 3, 7, 4, 6)] + [torch.tensor([1])])
    docs = split_documents(tokens, 1)
    plan = plan_batches(docs, 3)  # visited: [11], [7, 8, 9], [4, 5, 6] (lengths)
    chosen = phase_documents(plan, visited=2, keep=3)
    assert [int(docs.lengths[d]) for d in chosen] == [7, 8, 9]  # batch index 1 before batch index 2
    assert [int(docs.lengths[d]) for d in phase_documents(plan, 3, 4)] == [4, 5, 6, 7]


def test_concatenation_keeps_each_documents_tokens_and_masks_a_false_junction():
    tokens = torch.tensor([1, 5, 6, 1, 7, 1, 8, 9])  # the last document ends on a plain token
    docs = split_documents(tokens, 1)
    stream_, mask = concatenate_documents(tokens, docs, [1, 0])
    assert stream_.tolist() == [1, 7, 1, 5, 6, 1]
    assert mask.tolist() == [True] * 5
    stream_, mask = concatenate_documents(tokens, docs, [2, 1])
    assert stream_.tolist() == [1, 8, 1, 7, 1]
    assert mask.tolist() == [True, False, True, True]  # 8 -> BOS stands for 8 -> 9: not trained


def test_phases_run_and_change_the_score():
    val, tables = stream(), hand_made_tables(VOCAB)
    lora = lora_ttt_eval(tiny_gpt(), val, tables, lora_cfg(), DistEnv())
    phased = phased_ttt_eval(tiny_gpt(), val, tables, phased_cfg(), DistEnv())
    assert phased.details["phases_run"] == 3
    assert phased.details["lora_rebuilds"] > lora.details["lora_rebuilds"]  # fresh LoRA after each phase
    assert [p["boundary"] for p in phased.details["phases"]] == [2, 4, 6]
    assert all(p["steps"] == p["chunks"] - 1 for p in phased.details["phases"])  # last chunk skipped
    assert (phased.tokens, phased.bytes) == (lora.tokens, lora.bytes)
    assert phased.val_loss != lora.val_loss


def test_suite_dispatch_and_the_lora_requirement():
    val, tables = stream(), hand_made_tables(VOCAB)
    cfg = dataclasses.replace(phased_cfg(), seq_len=32, stride=32)
    assert run_evaluation(tiny_gpt(), val, tables, cfg, DistEnv())["ttt"].method == "phased_ttt"
    alone = dataclasses.replace(cfg, lora_ttt=dataclasses.replace(cfg.lora_ttt, enabled=False))
    with pytest.raises(ValueError, match="needs eval.lora_ttt.enabled"):
        run_evaluation(tiny_gpt(), val, tables, alone, DistEnv())


def run_phased(val, trace):
    phased_ttt_eval(tiny_gpt(), val, hand_made_tables(VOCAB), phased_cfg(), DistEnv(), trace=trace)


@pytest.mark.parametrize("pred", [2, 17])
def test_no_score_depends_on_a_token_scored_after_it(pred):
    # Later documents may learn from this one through global SGD, but only once it is fully scored.
    assert not perturbation_leaks(run_phased, stream(), 74, pred)


def test_global_sgd_on_an_unscored_document_is_refused(monkeypatch):
    real = phase_documents

    def with_an_unscored_one(plan, visited, keep):
        return real(plan, visited, keep) + plan.batches[-1].tolist()  # the batch visited last

    monkeypatch.setattr(phased_module, "phase_documents", with_an_unscored_one)
    with pytest.raises(ScoreFirstViolation, match="not fully scored"):
        run_phased(stream(), [])
