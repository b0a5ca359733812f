"""Two real gloo ranks score lora_ttt like one process (the static round-robin split of batches)."""

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from eval_standin import hand_made_tables
from test_lora_ttt import VOCAB, lora_cfg, stream, tiny_gpt
from test_phased_ttt import phased_cfg

from crownq.distributed import DistEnv
from crownq.eval.lora_ttt import lora_ttt_eval
from crownq.eval.phased_ttt import phased_ttt_eval

# A fresh A per batch (seeded by the batch's visit index) makes every document's score independent of
# which rank scored it; with the warm start, A carries over between the batches one rank happens to get.
CFG = lora_cfg(warm_start_a=False)


def evaluate(dist_env: DistEnv) -> list:
    torch.set_num_threads(1)
    result = lora_ttt_eval(tiny_gpt(), stream(), hand_made_tables(VOCAB), CFG, dist_env)
    # Phased: global SGD's gradients are summed over ranks; phases come due after rounds of one batch per
    # rank, so the score may differ from one process, but every target is still scored once.
    phased = phased_ttt_eval(tiny_gpt(), stream(), hand_made_tables(VOCAB), phased_cfg(), dist_env)
    return [result.val_loss, result.tokens, result.bytes, result.details["batches"],
            [phased.val_loss, phased.tokens, phased.bytes, phased.details["phases_run"]]]


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(evaluate(DistEnv(rank=rank, world_size=2))))
        dist.barrier()  # teardown together (see tests/eval/test_distributed.py)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned interpreters importing torch: ~15 s idle, more on a busy machine
def test_two_gloo_ranks_match_one_process(tmp_path):
    loss, tokens, nbytes, batches, phased = evaluate(DistEnv())
    assert batches >= 3  # both ranks score batches, one of them more than one
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        ranked = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert ranked[1:3] == [tokens, nbytes]
        assert ranked[0] == pytest.approx(loss, rel=1e-6)  # only the order of the float64 sums differs
        assert ranked[4][1:] == phased[1:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text())[4] for rank in range(2)]
    assert ranks[0] == ranks[1] and ranks[0][3] == 3  # one reduced score; all three phases ran
