"""eval=lora_ttt: documents, batches, batched adapters, and the score-first rule per document."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from eval_standin import bytes_by_rule, hand_made_tables, random_stream

import crownq.eval.lora_ttt as lora_ttt_module
from crownq.config.arch import ArchConfig
from crownq.config.eval import EvalConfig, LoRATTTConfig, TTTConfig
from crownq.data.byte_tables import ByteTables
from crownq.distributed import DistEnv
from crownq.eval import ScoreFirstViolation, run_evaluation
from crownq.eval.documents import DocumentGuard, plan_batches, split_documents
from crownq.eval.lora import BatchedLoRA, layer_slots, lora_per_token_loss
from crownq.eval.lora_ttt import ChunkBatch, lora_ttt_eval, score_chunk, train_chunk
from crownq.model import build_model

VOCAB = 64


def tiny_gpt(**arch):
    torch.manual_seed(0)
    base = dict(vocab_size=VOCAB, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1,
                tied_embed_init_std=0.5)
    model = build_model(ArchConfig(**{**base, **arch})).eval()
    with torch.no_grad():  # zero-initialised output projections would hide attention and MLP entirely
        for block in model.blocks:
            block.attn.out_proj.weight.normal_(std=0.2)
            block.mlp.proj.weight.normal_(std=0.2)
    return model


def stream(length=300, seed=1, bos_every=37):
    return random_stream(length, VOCAB, seed=seed, bos_every=bos_every)


def lora_cfg(**changes) -> EvalConfig:
    lt = dict(enabled=True, batch_docs=3, chunk=8, window=16, rank=4, lr=0.05)
    lt.update(changes)
    return EvalConfig(roundtrip=False, sliding=False, lora_ttt=LoRATTTConfig(**lt))


# ------------------------------------------------------------------------------ documents and batches
def test_documents_split_at_bos_and_cover_every_target_once():
    tokens = torch.tensor([5, 6, 1, 7, 8, 9, 1, 1, 4, 1])  # no leading BOS, a BOS pair, a final BOS
    docs = split_documents(tokens, bos_id=1)
    assert docs.starts.tolist() == [0, 2, 6, 7]
    assert docs.lengths.tolist() == [3, 5, 2, 3]  # each up to and including the next BOS
    covered = [s + 1 + j for s, n in zip(docs.starts.tolist(), docs.lengths.tolist()) for j in range(n - 1)]
    assert covered == list(range(1, len(tokens)))


def test_batches_are_length_sorted_groups_visited_longest_first():
    tokens = torch.cat([torch.tensor([1] + [9] * n) for n in (5, 2, 9, 3, 7, 4, 6)] + [torch.tensor([1])])
    docs = split_documents(tokens, bos_id=1)
    plan = plan_batches(docs, 3)
    lengths = [docs.lengths[b].tolist() for b in plan.batches]
    assert lengths == [[11], [7, 8, 9], [4, 5, 6]]  # BOS + n tokens + the next BOS
    assert plan.sorted_index == [2, 1, 0]
    assert plan.for_rank(0, 2) == [0, 2] and plan.for_rank(1, 2) == [1]


# ------------------------------------------------------------------------------------------ adapters
def test_zero_b_leaves_the_model_alone_and_every_slot_is_reached():
    model = tiny_gpt(num_layers=3, num_loops=1, loop_start=1, loop_end=1)  # layer 1 runs twice
    assert layer_slots(model) == [0, 1, 1, 2]
    lora = BatchedLoRA(model, 2, 4, 8.0, torch.Generator().manual_seed(0), torch.device("cpu"))
    inputs, targets = stream(33)[:-1].view(2, 16), stream(33)[1:].view(2, 16)
    with torch.no_grad():
        base = model.per_token_loss(inputs, targets)
        assert torch.equal(lora_per_token_loss(model, lora, inputs, targets), base)
        for kind in ("q", "k", "v", "o", "mlp"):
            for slot in range(4):
                lora.B[kind][slot].normal_()
                changed = lora_per_token_loss(model, lora, inputs, targets)
                lora.zero_b()
                assert not torch.allclose(changed, base), (kind, slot)
        lora.B["head"].normal_()
        assert not torch.allclose(lora_per_token_loss(model, lora, inputs, targets), base)


def test_each_document_has_its_own_adapters():
    model = tiny_gpt()
    lora = BatchedLoRA(model, 2, 4, 8.0, torch.Generator().manual_seed(0), torch.device("cpu"))
    inputs, targets = stream(33)[:-1].view(2, 16), stream(33)[1:].view(2, 16)
    lora_per_token_loss(model, lora, inputs, targets)[0].sum().backward()  # row 0's loss only
    for b in lora.B.values():
        assert b.grad[..., 0, :, :].abs().sum() > 0 and b.grad[..., 1, :, :].abs().sum() == 0


# ------------------------------------------------------------------------------------- the method
def test_without_learning_it_scores_each_document_alone():
    model, val, tables = tiny_gpt(), stream(), hand_made_tables(VOCAB)
    result = lora_ttt_eval(model, val, tables, lora_cfg(lr=0.0, window=64), DistEnv())
    docs = split_documents(val, 1)
    total = 0.0
    with torch.no_grad():
        for s, n in zip(docs.starts.tolist(), docs.lengths.tolist()):
            nats = model.per_token_loss(val[s:s + n - 1][None], val[s + 1:s + n][None])
            total += nats.double().sum().item()
    assert result.tokens == val.numel() - 1 and result.bytes == bytes_by_rule(val, tables)
    assert result.val_loss == pytest.approx(total / result.tokens, rel=1e-6)
    assert result.details["adamw_steps"] == 0 and result.within_budget


def test_learning_a_repeated_document_lowers_the_loss():
    pattern = torch.randint(4, VOCAB, (12,), generator=torch.Generator().manual_seed(3))
    doc = torch.cat([torch.tensor([1]), pattern.repeat(8)])
    val = torch.cat([doc.repeat(4), torch.tensor([1])])
    frozen = lora_ttt_eval(tiny_gpt(), val, hand_made_tables(VOCAB), lora_cfg(lr=0.0), DistEnv())
    learned = lora_ttt_eval(tiny_gpt(), val, hand_made_tables(VOCAB), lora_cfg(lr=0.01), DistEnv())
    assert learned.val_loss < frozen.val_loss - 0.05
    assert learned.details["adamw_steps"] > 0


def test_caseops_bytes_come_from_the_sidecar_by_position():
    val = stream()
    sidecar = torch.randint(0, 7, (val.numel(),), generator=torch.Generator().manual_seed(5))
    plain = hand_made_tables(VOCAB)
    tables = ByteTables(plain.base_bytes, plain.has_leading_space, plain.is_boundary, sidecar)
    result = lora_ttt_eval(tiny_gpt(), val, tables, lora_cfg(), DistEnv())
    assert result.bytes == int(sidecar[1:].sum()) != bytes_by_rule(val, plain)


def test_the_suite_runs_it_as_the_headline_and_refuses_contradictions():
    val, tables = stream(), hand_made_tables(VOCAB)
    results = run_evaluation(tiny_gpt(), val, tables, dataclasses.replace(lora_cfg(), seq_len=32, stride=32),
                             DistEnv())
    assert list(results) == ["ttt"] and results["ttt"].method == "lora_ttt"
    both = dataclasses.replace(lora_cfg(), ttt=TTTConfig(enabled=True))
    with pytest.raises(ValueError, match="choose one test-time"):
        run_evaluation(tiny_gpt(), val, tables, both, DistEnv())


@pytest.mark.parametrize("change, match", [({"chunk": 0}, "lora_ttt.chunk"),
                                           ({"window": 4}, "window=4 must be at least")])
def test_bad_settings_are_clear_errors(change, match):
    with pytest.raises(ValueError, match=match):
        lora_ttt_eval(tiny_gpt(), stream(), hand_made_tables(VOCAB), lora_cfg(**change), DistEnv())


# ------------------------------------------------------------------------------ score first, checked
def scored_before(trace: list, doc: int, pred: int) -> list:
    """Everything scored before prediction `pred` of `doc` was: earlier events in full, and that event's
    predictions before `pred`. Score-first and causal: none of it may depend on that target token."""
    out = []
    for event in trace:
        if event[0] != "score":
            continue
        _, d, lo, hi, nats = event
        if d == doc and lo <= pred < hi:
            out.append(nats[:pred - lo])
            return out
        out.append(nats)
    raise AssertionError("prediction never scored")


def perturbation_leaks(run, val: torch.Tensor, doc_start: int, pred: int) -> bool:
    """Change the target of prediction `pred` of the document at `doc_start`; True if anything scored
    before it changed (the score-first rule broken)."""
    docs = split_documents(val, 1)
    doc = docs.starts.tolist().index(doc_start)
    changed = val.clone()
    pos = doc_start + pred + 1
    changed[pos] = 4 + (int(val[pos]) - 3) % (VOCAB - 4)
    a, b = [], []
    run(val, a)
    run(changed, b)
    before_a, before_b = scored_before(a, doc, pred), scored_before(b, doc, pred)
    return any(not torch.equal(x, y) for x, y in zip(before_a, before_b))


def run_lora(val, trace):
    lora_ttt_eval(tiny_gpt(), val, hand_made_tables(VOCAB), lora_cfg(), DistEnv(), trace=trace)


@pytest.mark.parametrize("pred", [3, 8, 13, 20])  # first chunk, chunk edges, later chunks
def test_no_score_depends_on_a_token_scored_after_it(pred):
    val = stream(bos_every=37)
    assert not perturbation_leaks(run_lora, val, 37, pred)


def train_then_score(model, lora, optimizer, tokens, tables, docs, doc_ids, guard, lt, runtime, sums,
                     trace=None):
    """The illegal order: learn from a chunk, then score it with the updated adapters."""
    steps = 0
    for c in range(-(-int(docs.predictions[doc_ids].max()) // lt.chunk)):
        cb = ChunkBatch(tokens, docs, doc_ids, lt.chunk, c, lt.window, runtime.device)
        nats = lora_per_token_loss(model, lora, cb.inputs, cb.targets, cb.rows)
        if not bool(cb.is_last.all()):
            steps += train_chunk(nats, nats.detach().double(), cb, optimizer, guard, trace)
        with torch.no_grad():
            nats = lora_per_token_loss(model, lora, cb.inputs, cb.targets, cb.rows)
        score_chunk(nats, cb, tables, sums, guard, trace)
    return steps


def test_training_before_scoring_is_refused_by_the_guard(monkeypatch):
    monkeypatch.setattr(lora_ttt_module, "score_and_train_batch", train_then_score)
    with pytest.raises(ScoreFirstViolation, match="must be scored before"):
        run_lora(stream(), [])


def test_the_perturbation_check_catches_training_before_scoring(monkeypatch):
    # Without the guard, the wrong order must show up in the scores: the check above can fail.
    monkeypatch.setattr(lora_ttt_module, "score_and_train_batch", train_then_score)
    monkeypatch.setattr(DocumentGuard, "check_trainable", lambda self, doc, lo, hi: None)
    assert perturbation_leaks(run_lora, stream(bos_every=37), 37, 13)


@pytest.mark.parametrize("option", ["lora_ttt", "phased_ttt"])
def test_the_options_compose_with_the_spec_values_and_run(option):
    from test_suite import compose_config

    cfg = compose_config(f"eval={option}", "eval.lora_ttt.batch_docs=3", "eval.lora_ttt.chunk=8",
                         "eval.lora_ttt.window=16", "eval.lora_ttt.rank=4", "eval.phased_ttt.prefix_docs=4",
                         "eval.phased_ttt.chunk_tokens=32", "eval.phased_ttt.seq_len=16")
    defaults = compose_config(f"eval={option}").eval
    assert (defaults.lora_ttt.rank, defaults.lora_ttt.alpha, defaults.lora_ttt.chunk) == (80, 144.0, 48)
    lt = defaults.lora_ttt
    assert (lt.beta1, lt.beta2, lt.eps, lt.weight_decay, lt.lr) == (0.0, 0.99, 1e-10, 0.5, 1e-4)
    assert defaults.phased_ttt.enabled == (option == "phased_ttt") and defaults.lora_ttt.enabled
    results = run_evaluation(tiny_gpt(), stream(), hand_made_tables(VOCAB), cfg.eval, DistEnv())
    assert list(results) == ["ttt"] and results["ttt"].method == option
