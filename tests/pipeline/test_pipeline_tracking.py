"""wandb: offline runs read back from their record log; logger=none writes nothing; requeue resumes."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from pipeline_compose import compose_run_config
from wandb_log_reader import read_offline_run

from crownq.tracking import WANDB_ID_FILENAME, log_callable, start_tracking


@pytest.fixture(scope="module")
def default_cfg():
    return compose_run_config()


@pytest.fixture(autouse=True)
def _quiet_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)


def _only_run_dir(run_dir: Path) -> Path:
    (found,) = (run_dir / "wandb").glob("offline-run-*")
    return found


def test_offline_run_records_config_curves_and_summary(tmp_path):
    cfg = compose_run_config(["seed=42", "sweep=seeds"])
    tracker = start_tracking(cfg, tmp_path, "0123456789abcdef")
    log = log_callable(tracker, echo=None)
    for step in (0, 10, 20):
        log({"step": step, "train_loss": 5.0 - step / 10, "lr_scale": 1.0})
    tracker.finish({"status": "ok", "val_bpb": 2.5, "sliding_val_bpb": None, "traceback": "x"})
    logged = read_offline_run(_only_run_dir(tmp_path))
    # Identity rules (group = sweep-date-cell, job_type = sweep) are tested in tests/tracking/.
    assert logged["run"]["group"].startswith("seeds-") and logged["run"]["job_type"] == "seeds"
    assert logged["run"]["name"] == "default-seed42"
    assert logged["config"]["seed"] == 42 and logged["config"]["arch"]["name"] == cfg.arch.name
    assert [h["train_loss"] for h in logged["history"]] == [5.0, 4.0, 3.0]
    assert [h["_step"] for h in logged["history"]] == [0, 10, 20]
    assert logged["summary"]["val_bpb"] == 2.5 and logged["summary"]["status"] == "ok"
    assert "traceback" not in logged["summary"]
    assert logged["exit_code"] == 0


def test_a_single_run_is_its_own_group_and_failure_exit_code(tmp_path, default_cfg):
    tracker = start_tracking(default_cfg, tmp_path, "fedcba9876543210ffff")
    tracker.finish({"status": "failed"}, failed=True)
    tracker.finish({"status": "failed"}, failed=True)  # a second finish is a no-op
    logged = read_offline_run(_only_run_dir(tmp_path))
    assert logged["run"]["group"].startswith("single-") and logged["run"]["job_type"] == "single"
    assert logged["exit_code"] == 1


def test_requeued_run_reuses_the_wandb_id(tmp_path, default_cfg):
    cfg = default_cfg
    start_tracking(cfg, tmp_path, "ab" * 8).finish()
    first = (tmp_path / WANDB_ID_FILENAME).read_text().strip()
    start_tracking(cfg, tmp_path, "ab" * 8).finish()
    ids = {read_offline_run(p)["run"]["id"] for p in (tmp_path / "wandb").glob("offline-run-*")}
    assert ids == {first}


def test_logger_none_and_other_ranks_write_nothing(tmp_path, default_cfg):
    tracker = start_tracking(compose_run_config(["logger=none"]), tmp_path / "a", "0" * 16)
    assert not tracker.active
    tracker.log({"step": 1, "loss": 1.0})
    tracker.finish({"status": "ok"})
    rank1 = start_tracking(default_cfg, tmp_path / "b", "0" * 16, enabled=False)
    assert not rank1.active
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bad_mode_is_named(tmp_path, default_cfg):
    cfg = OmegaConf.merge(default_cfg, {"logger": {"mode": "offlne"}})
    with pytest.raises(ValueError, match="logger.mode must be offline, online or disabled, got 'offlne'"):
        start_tracking(cfg, tmp_path, "0" * 16)
