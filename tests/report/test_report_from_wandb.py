"""`crownq-report --from-wandb FOLDER --group G`: the report rebuilt from offline wandb runs written by
crownq's tracker (real wandb record logs, no server) equals the report from the result files."""

import json

import pytest
from omegaconf import OmegaConf

from crownq.report import main as report_main
from crownq.report.wandb_source import read_offline_run, runs_from_wandb
from crownq.results import REQUIRED_OK_KEYS, write_json_atomic
from crownq.tracking import WANDB_ID_FILENAME, start_tracking

SWEEP = "multirun/ablate_quantizer/2026-11-25_19-23-19"
GROUP = "ablate_quantizer-2026-11-25_19-23-19"


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / ".wandb-data"))
    monkeypatch.delenv("WANDB_MODE", raising=False)


def _cfg(seed):
    return OmegaConf.create({"seed": seed, "sweep": "ablate_quantizer", "ablation": "",
                             "logger": {"enabled": True, "mode": "offline", "project": "crownq", "entity": "",
                                        "group": "", "job_type": "", "tags": ["mine"], "dir": ""}})


def _result(seed, cell, loss, run_dir):
    artifact = run_dir / "artifact.ptz"
    artifact.write_bytes(b"x" * (100 + seed))
    return {**{k: 0 for k in REQUIRED_OK_KEYS}, "status": "ok", "seed": seed, "config_digest": cell * 64,
            "sweep": "ablate_quantizer", "ablation": f"quantizer={cell}", "sweep_dir": SWEEP,
            "overrides": [f"quantizer={cell}", f"seed={seed}"], "val_loss": loss, "val_bpb": loss / 1.7,
            "artifact_bytes_total": 15_000_000 + seed, "artifact_bytes_code": 100, "artifact_bytes_model": 1,
            "train_seconds": 1.0, "eval_seconds": 1.0, "steps": 5, "hardware": "cpu",
            "artifact_path": str(artifact), "run_dir": str(run_dir)}


def _seed_run(root, n, seed, cell, loss, finish=True):
    run_dir = root / f"{n}_seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    result = _result(seed, cell, loss, run_dir)
    identity = {k: result[k] for k in ("seed", "config_digest", "sweep", "ablation", "sweep_dir", "run_dir")}
    tracker = start_tracking(_cfg(seed), run_dir, identity)
    if finish:
        write_json_atomic(run_dir / "result.json", result)
        tracker.finish(result)
    else:  # a preempted attempt: the process ends without a final summary
        tracker.finish(None, failed=True)
    return run_dir


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    for n, (seed, cell, loss) in enumerate([(1, "a", 2.00), (2, "a", 2.01), (1, "b", 2.05), (2, "b", 2.07)]):
        _seed_run(root, n, seed, cell, loss)
    return root


def test_runs_from_offline_folders_carry_identity_and_the_artifact(sweep):
    runs = runs_from_wandb(str(sweep), GROUP)
    assert sorted((r["ablation"], r["seed"]) for r in runs) == [
        ("quantizer=a", 1), ("quantizer=a", 2), ("quantizer=b", 1), ("quantizer=b", 2)]
    (folder,) = (sweep / "0_seed1" / "wandb").glob("offline-run-*")
    logged = read_offline_run(folder)
    assert logged["run"]["group"] == f"{GROUP}-quantizer=a" and logged["run"]["name"] == "quantizer=a-seed1"
    assert "mine" in logged["run"]["tags"] and f"sweep:{GROUP}" in logged["run"]["tags"]
    (artifact,) = logged["artifacts"]
    assert artifact["type"] == "model" and artifact["name"] == f"model-{'a' * 12}-seed1"
    assert artifact["metadata"]["artifact_bytes_total"] == 15_000_001
    assert artifact["metadata"]["config_digest"] == "a" * 64


def test_report_from_wandb_equals_report_from_result_files(sweep, tmp_path):
    assert report_main([str(sweep), "--out", str(tmp_path / "files"), "--baseline", "quantizer=a"]) == 0
    assert report_main(["--from-wandb", str(sweep), "--group", GROUP, "--out", str(tmp_path / "wb"),
                        "--baseline", "quantizer=a"]) == 0
    files = json.loads((tmp_path / "files" / "report.json").read_text())
    wb = json.loads((tmp_path / "wb" / "report.json").read_text())
    strip = lambda g: {k: v for k, v in g.items() if k not in ("seed_rows", "failed")}  # run folders differ
    assert [strip(g) for g in wb["groups"]] == [strip(g) for g in files["groups"]]
    assert wb["groups"][1]["vs_baseline"]["paired"]["kind"] == "paired"
    assert wb["wandb_group"] == files["wandb_group"] == GROUP


def test_another_group_or_an_empty_folder_is_a_clear_error(sweep, tmp_path, capsys):
    assert report_main(["--from-wandb", str(sweep), "--group", "seeds-2020-01-01_00-00-00",
                        "--out", str(tmp_path / "x")]) == 2
    assert "no crownq seed runs found in group 'seeds-2020-01-01_00-00-00'" in capsys.readouterr().err


def test_a_requeued_seed_is_one_run_and_its_final_attempt_counts(tmp_path):
    root = tmp_path / "sweep"
    first = _seed_run(root, 0, 7, "a", 2.0, finish=False)
    run_id = (first / WANDB_ID_FILENAME).read_text().strip()
    _seed_run(root, 0, 7, "a", 2.0)  # the requeued attempt: same folder, same stored id
    folders = sorted((first / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and {read_offline_run(f)["run"]["id"] for f in folders} == {run_id}
    (run,) = runs_from_wandb(str(root), GROUP)
    assert run["status"] == "ok" and run["wandb_run"]["id"] == run_id


def test_report_run_is_grouped_with_the_sweep(sweep, tmp_path):
    assert report_main([str(sweep), "--out", str(tmp_path / "r"), "--wandb"]) == 0
    (folder,) = (tmp_path / "r" / "wandb").glob("offline-run-*")
    logged = read_offline_run(folder)
    assert logged["run"]["job_type"] == "report" and logged["run"]["group"] == GROUP
    assert logged["summary"]["summary"]["_type"] == "table-file"
    assert logged["summary"]["per_seed"]["nrows"] == 4
    assert logged["summary"]["val_bpb"]["_type"] == "image-file"
    # The report run is never read back as a seed.
    assert len(runs_from_wandb(str(tmp_path), GROUP)) == 4
