"""rescore_from: picking the finished run whose artifact an eval-only run scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipeline_compose import compose_run_config
from pipeline_synthetic import ok_result

from crownq.rescore import find_source_run
from crownq.results import config_digest, training_digest


def finished_run(folder: Path, seed: int, digest: str, status: str = "ok", artifact: bool = True) -> Path:
    folder.mkdir(parents=True)
    result = {**ok_result(seed, "c" * 64, 2.0), "status": status, "training_digest": digest}
    (folder / "result.json").write_text(json.dumps(result))
    if artifact:
        (folder / "artifact.ptz").write_bytes(b"x")
    return folder


def test_training_digest_ignores_eval_but_not_training():
    base = compose_run_config([])
    stride = compose_run_config(["eval=sliding32"])
    assert config_digest(base) != config_digest(stride)  # a different experiment for the report
    assert training_digest(base) == training_digest(stride)  # the same artifact
    assert training_digest(base) != training_digest(compose_run_config(["train.iterations=7"]))
    assert config_digest(base) == config_digest(compose_run_config(["rescore_from=/somewhere"]))


def test_picks_the_run_with_this_seed_and_training_config(tmp_path):
    finished_run(tmp_path / "0_seed1337", 1337, "a" * 64)
    wanted = finished_run(tmp_path / "1_seed42", 42, "a" * 64)
    finished_run(tmp_path / "2_seed42_other", 42, "b" * 64)
    finished_run(tmp_path / "3_seed42_failed", 42, "a" * 64, status="failed")
    (tmp_path / "4_broken").mkdir()
    (tmp_path / "4_broken" / "result.json").write_text('{"status": "ok", "se')
    source_dir, result = find_source_run(tmp_path, 42, "a" * 64)
    assert source_dir == wanted and result["seed"] == 42
    # A run folder itself works too.
    assert find_source_run(wanted, 42, "a" * 64)[0] == wanted


def test_errors_name_the_folder_and_what_is_there(tmp_path):
    with pytest.raises(FileNotFoundError, match="rescore_from=.*nowhere: no such folder"):
        find_source_run(tmp_path / "nowhere", 1, "a" * 64)
    with pytest.raises(ValueError, match="no finished run"):
        find_source_run(tmp_path, 1, "a" * 64)
    finished_run(tmp_path / "0_seed7", 7, "a" * 64)
    with pytest.raises(ValueError, match=r"no finished run with seed 42 \(seeds there: \[7\]\)"):
        find_source_run(tmp_path, 42, "a" * 64)
    with pytest.raises(ValueError, match=r"trained with another config \(training digest aaaaaaaaaaaa, "
                                         r"this run bbbbbbbbbbbb\)"):
        find_source_run(tmp_path, 7, "b" * 64)
    finished_run(tmp_path / "1_seed7_again", 7, "a" * 64)
    with pytest.raises(ValueError, match="2 finished runs match seed 7"):
        find_source_run(tmp_path, 7, "a" * 64)


def test_a_source_without_its_artifact_is_refused(tmp_path):
    finished_run(tmp_path / "0_seed7", 7, "a" * 64, artifact=False)
    with pytest.raises(FileNotFoundError, match="artifact.ptz is missing"):
        find_source_run(tmp_path, 7, "a" * 64)
