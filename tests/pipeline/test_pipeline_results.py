"""result.json writing/reading and the config digest."""

import json
import os

import pytest
from omegaconf import OmegaConf
from pipeline_compose import compose_run_config

from crownq import results
from crownq.results import ResultError, config_digest, failure_fields, read_result, write_json_atomic


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"status": "running", "seed": 1})
    write_json_atomic(path, {"status": "ok", "seed": 1, "x": [1, 2]})
    assert json.loads(path.read_text()) == {"status": "ok", "seed": 1, "x": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temp files left behind


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"status": "running", "seed": 1})

    def exploding_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "fsync", exploding_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(path, {"status": "ok", "seed": 1})
    assert json.loads(path.read_text()) == {"status": "running", "seed": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_read_errors_name_the_file_and_the_field(tmp_path):
    bad_json = tmp_path / "a.json"
    bad_json.write_text('{"status": ')
    with pytest.raises(ResultError, match=r"a\.json: not valid JSON at line 1"):
        read_result(bad_json)
    bad_status = tmp_path / "b.json"
    bad_status.write_text('{"status": "done", "seed": 1}')
    with pytest.raises(ResultError, match=r"b\.json: field 'status' is 'done', expected one of"):
        read_result(bad_status)
    with pytest.raises(ResultError, match=r"c\.json: cannot read"):
        read_result(tmp_path / "c.json")


def test_failure_fields_carry_error_and_traceback():
    try:
        raise ValueError("train.iterations must be positive")
    except ValueError as exc:
        fields = failure_fields(exc)
    assert fields["status"] == "failed"
    assert fields["error"] == "ValueError: train.iterations must be positive"
    assert "Traceback" in fields["traceback"] and "raise ValueError" in fields["traceback"]


def _edited(cfg, key: str, value):
    copy = OmegaConf.create(OmegaConf.to_container(cfg))  # interpolations kept, so they re-resolve
    OmegaConf.update(copy, key, value, force_add=True)
    return copy


def test_digest_ignores_seed_logger_labels_debug_and_paths():
    cfg = compose_run_config()
    base = config_digest(cfg)
    assert config_digest(compose_run_config(["seed=42", "logger=none", "+debug.fail_seed=42"])) == base
    same = {"seed": 7, "logger.project": "other", "debug.crash_seed": 1, "sweep": "seeds", "ablation": "x",
            "data.root": "/somewhere/else"}
    for key, value in same.items():
        assert config_digest(_edited(cfg, key, value)) == base, key
    different = {"arch.num_layers": 3, "quantizer.crownq_lambda": 0.03, "eval.stride": 32,
                 "train.iterations": 7, "data.vocab_size": 512}  # arch.vocab_size follows data.vocab_size
    digests = {config_digest(_edited(cfg, key, value)) for key, value in different.items()}
    assert base not in digests and len(digests) == len(different)
    assert config_digest(compose_run_config(["arch=mid"])) != base


def test_digest_is_stable_across_processes(tmp_path):
    # Hashing canonical JSON (sorted keys) means the digest does not depend on dict order or the process.
    import subprocess
    import sys

    code = ("from pipeline_compose import compose_run_config; from crownq.results import config_digest; "
            "print(config_digest(compose_run_config(['seed=7'])))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), str(tmp_path), *sys.path])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == config_digest(compose_run_config())
