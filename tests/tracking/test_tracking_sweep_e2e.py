"""The issue's new-user sweep, end to end and offline: `+sweeps=ablate_quantizer` with two quantizers
and two seeds, read back from the wandb record logs (groups, names, tags, artifacts, the report run),
the job logs with their progress lines, and a seed sweep that reuses a finished run."""

import json

import pytest
from tracking_helpers import launch

from crownq.report.wandb_source import read_offline_run

pytestmark = pytest.mark.slow
STAMP = "2026-01-02_03-04-05"
GROUP = f"ablate_quantizer-{STAMP}"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("e2e")
    sweep_dir = cwd / "multirun" / "ablate_quantizer" / STAMP
    proc = launch("-m", "+sweeps=ablate_quantizer", "+preset=smoke", "quantizer=gptq_int6,rtn_int6",
                  "seed=1,2", "logger.tags=[mine]", f"hydra.sweep.dir={sweep_dir}", cwd=cwd,
                  extra_env={"CROWNQ_PROGRESS": "lines", "CROWNQ_PROGRESS_SECONDS": "1000"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, sweep_dir, proc


def test_one_group_per_cell_unique_names_user_tags_and_artifacts(sweep):
    _, sweep_dir, _ = sweep
    seeds = [read_offline_run(f) for f in sorted(sweep_dir.glob("*_seed*/wandb/offline-run-*"))]
    assert len(seeds) == 4
    groups = {s["run"]["group"] for s in seeds}
    assert groups == {f"{GROUP}-quantizer=gptq_int6", f"{GROUP}-quantizer=rtn_int6"}
    names = [s["run"]["name"] for s in seeds]
    assert sorted(names) == ["quantizer=gptq_int6-seed1", "quantizer=gptq_int6-seed2",
                             "quantizer=rtn_int6-seed1", "quantizer=rtn_int6-seed2"]
    for s in seeds:
        assert s["run"]["job_type"] == "ablate_quantizer"
        assert "mine" in s["run"]["tags"] and f"sweep:{GROUP}" in s["run"]["tags"]
        (artifact,) = s["artifacts"]
        assert artifact["type"] == "model"
        assert artifact["metadata"]["val_bpb"] == pytest.approx(s["summary"]["val_bpb"])
        assert artifact["metadata"]["artifact_bytes_total"] == s["summary"]["artifact_bytes_total"]


def test_the_report_run_sits_in_the_sweeps_group_and_the_end_says_how_to_sync(sweep):
    _, sweep_dir, proc = sweep
    (folder,) = (sweep_dir / "report" / "wandb").glob("offline-run-*")
    report = read_offline_run(folder)
    assert report["run"]["job_type"] == "report" and report["run"]["group"] == GROUP
    assert report["summary"]["per_seed"]["nrows"] == 4 and report["summary"]["runs_ok"] == 4
    assert "## Summary" in proc.stdout and "wandb sync " in proc.stdout
    assert str(sweep_dir / "report" / "report.md") in proc.stdout


def test_job_logs_hold_the_run_with_progress_lines(sweep):
    _, sweep_dir, _ = sweep
    log = (sweep_dir / "0_seed1" / "crownq.log").read_text()
    for expected in ("calibration 2/2 batches", "gptq ", "pruning not needed", "roundtrip ", "sliding64 ",
                     "tokens/s", "val_bpb"):
        assert expected in log, expected


def test_a_seed_sweep_reuses_the_finished_identical_run(sweep):
    cwd, sweep_dir, _ = sweep
    seeds_dir = cwd / "multirun" / "seeds" / STAMP
    proc = launch("-m", "+sweeps=seeds", "+preset=smoke", "seed=1", "reuse=true", "logger=none",
                  f"hydra.sweep.dir={seeds_dir}", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((seeds_dir / "0_seed1" / "result.json").read_text())
    source = json.loads((sweep_dir / "0_seed1" / "result.json").read_text())
    # In a tree being edited while the test runs the digests move on, and computing is then right.
    same = {k: (result[k], source[k]) for k in ("config_digest", "code_digest")}
    assert "reused_from" in result, f"not reused: {same}"
    assert result["reused_from"] == str((sweep_dir / "0_seed1").resolve())
    assert result["val_bpb"] == source["val_bpb"] and result["config_digest"] == source["config_digest"]
    assert (seeds_dir / "0_seed1" / "artifact.ptz").read_bytes() == (sweep_dir / "0_seed1" /
                                                                     "artifact.ptz").read_bytes()
    assert "reused from" in (seeds_dir / "report" / "report.md").read_text()
    assert "[crownq] train" not in proc.stdout
