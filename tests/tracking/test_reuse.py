"""Reuse of finished runs: only an exact match (seed, config, code, hardware) is copied, with
`reused_from` recorded; anything else computes."""

import json
import os

import pytest

from crownq.results import ARTIFACT_FILENAME, REQUIRED_OK_KEYS, RESULT_FILENAME
from crownq.reuse import code_digest, reuse_finished_run, source_digest

IDENTITY = {"seed": 1337, "config_digest": "c" * 64, "code_digest": "d" * 64, "hardware": "1xcpu",
            "world_size": 1, "torch_version": "2.13.0", "sweep": "seeds", "ablation": "",
            "run_dir": "new", "overrides": []}


def finished(folder, mtime=None, **changes):
    folder.mkdir(parents=True)
    result = {**{k: 1 for k in REQUIRED_OK_KEYS}, **IDENTITY, "status": "ok", "val_bpb": 2.2, "val_loss": 3.8,
              "steps": 300, "train_seconds": 88.0, "run_dir": str(folder), **changes}
    (folder / RESULT_FILENAME).write_text(json.dumps(result))
    (folder / ARTIFACT_FILENAME).write_bytes(b"model-" + folder.name.encode())
    if mtime is not None:
        os.utime(folder / RESULT_FILENAME, (mtime, mtime))
    return folder


def test_an_identical_finished_run_is_copied_with_reused_from(tmp_path):
    source = finished(tmp_path / "outputs" / "a")
    new = tmp_path / "multirun" / "seeds" / "0_seed1337"
    outcome = reuse_finished_run(IDENTITY, new, roots=[tmp_path / "outputs"])
    assert outcome["reused_from"] == str(source.resolve())
    assert outcome["val_bpb"] == 2.2 and outcome["steps"] == 300
    assert outcome["artifact_path"] == str(new / ARTIFACT_FILENAME)
    assert (new / ARTIFACT_FILENAME).read_bytes() == b"model-a"
    assert "seed" not in outcome and "run_dir" not in outcome  # identity stays the new run's own


@pytest.mark.parametrize("change", [{"seed": 42}, {"config_digest": "e" * 64}, {"code_digest": "f" * 64},
                                    {"hardware": "8xNVIDIA H100"}, {"torch_version": "2.5.0"},
                                    {"status": "failed"}])
def test_any_difference_means_computing(tmp_path, change):
    finished(tmp_path / "outputs" / "a", **change)
    assert reuse_finished_run(IDENTITY, tmp_path / "new", roots=[tmp_path / "outputs"]) is None


def test_the_newest_match_wins_and_a_copy_points_at_the_original(tmp_path):
    finished(tmp_path / "outputs" / "old", mtime=1_000)
    newest = finished(tmp_path / "outputs" / "newer", mtime=2_000)
    first = reuse_finished_run(IDENTITY, tmp_path / "m1", roots=[tmp_path / "outputs"])
    assert first["reused_from"] == str(newest.resolve())
    copy = finished(tmp_path / "outputs" / "copy", mtime=3_000, reused_from=str(newest.resolve()))
    again = reuse_finished_run(IDENTITY, tmp_path / "m2", roots=[tmp_path / "outputs"])
    assert again["reused_from"] == str(newest.resolve()) != str(copy)


def test_no_code_digest_no_reuse(tmp_path):
    finished(tmp_path / "outputs" / "a")
    assert reuse_finished_run({**IDENTITY, "code_digest": ""}, tmp_path / "n", [tmp_path / "outputs"]) is None


def test_code_digest_follows_recipe_code_but_not_report_code(tmp_path):
    pkg = tmp_path / "crownq"
    (pkg / "report").mkdir(parents=True)
    (pkg / "train.py").write_text("x = 1\n")
    (pkg / "report" / "render.py").write_text("y = 1\n")
    before = source_digest(pkg)
    (pkg / "report" / "render.py").write_text("y = 2\n")
    assert source_digest(pkg) == before
    (pkg / "train.py").write_text("x = 2\n")
    assert source_digest(pkg) != before
    assert len(code_digest()) == 64
