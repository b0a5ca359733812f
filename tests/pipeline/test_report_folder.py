"""crownq-report on hand-made sweep folders: tables, failures, outputs, submission.json, wandb."""

import json

import pytest
from pipeline_synthetic import RECORD_SEEDS, ok_result, record_sweep, write_run

from crownq.report import main, write_report
from crownq.report.build import build_report

SUBMISSION_KEYS = {"author", "github_id", "name", "blurb", "date", "track", "val_loss", "val_bpb",
                   "val_bpb_std", "seeds", "seed_results", "bytes_total", "bytes_code", "hardware",
                   "pytorch_version", "compliance"}


def test_groups_means_and_failures(tmp_path):
    report = build_report(record_sweep(tmp_path), baseline="record")
    groups = {g["label"]: g for g in report["groups"]}
    assert set(groups) == {"record", "better"}
    record = groups["record"]
    assert record["seeds_ok"] == [7, 42, 1337]
    assert record["val_bpb"]["mean"] == pytest.approx(1.1185469, abs=1e-7)  # the record's 1.1185
    assert record["val_bpb"]["std"] == pytest.approx(0.0005417, abs=1e-6)  # published std 0.0005
    assert record["artifact_bytes_total"]["mean"] == pytest.approx(sum(
        s["artifact_bytes_total"] for s in RECORD_SEEDS.values()) / 3)
    assert "vs_baseline" not in record  # the baseline is not tested against itself
    better = groups["better"]
    assert better["vs_baseline"]["meets_record_bar"]
    assert better["failed"] == [{"seed": 99, "status": "failed", "run_dir": "6_seed99",
                                 "error": "RuntimeError: debug.fail_seed=99: injected failure"}]
    assert report["runs_total"] == 7 and report["runs_ok"] == 6


def test_cli_writes_every_output(tmp_path, capsys):
    sweep = record_sweep(tmp_path / "sweep")
    assert main([str(sweep), "--baseline-scores", "1.89002", "--author", "me"]) == 0
    printed = capsys.readouterr().out
    assert "below the 0.005-nat bar" in printed  # the record's own claim, flagged automatically
    assert "## Failed runs" in printed and "debug.fail_seed=99" in printed
    out = sweep / "report"
    assert (out / "report.md").read_text().startswith("# Sweep report")
    data = json.loads((out / "report.json").read_text())
    assert data["baseline"] == {"group": None, "val_loss": [1.89002]}
    assert (out / "val_bpb.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sub = json.loads((out / "submissions" / "record" / "submission.json").read_text())
    assert SUBMISSION_KEYS <= set(sub)
    assert sub["author"] == "me" and sub["track"] == "10min_16mb"
    assert sub["seeds"] == [7, 42, 1337] and sub["bytes_total"] == 15_947_742
    assert sub["seed_results"]["42"]["val_loss"] == 1.88913665
    assert sub["compliance"] == {"artifact_under_16mb": True, "train_under_600s": True,
                                 "eval_under_600s": True, "score_first_ttt": True}
    assert "p_value" in sub and "welch_df" not in sub  # one-sample test against a single mean


def test_compliance_fails_when_one_seed_is_over(tmp_path):
    for seed, size, train in ((1, 15_999_999, 599.0), (2, 16_000_001, 601.0)):
        write_run(tmp_path, f"seed{seed}", ok_result(seed, "c" * 64, 2.0 + seed / 1000,
                                                     artifact_bytes_total=size, train_seconds=train))
    (group,) = build_report(tmp_path)["groups"]
    assert group["compliance"]["artifact_under_16mb"] is False
    assert group["compliance"]["train_under_600s"] is False
    assert group["compliance"]["eval_under_600s"] is True


def test_calibration_counts_against_the_training_budget(tmp_path):
    run = ok_result(1, "f" * 64, 2.0, train_seconds=585.0)
    write_run(tmp_path, "0_seed1", {**run, "calibration_seconds": 14.0})
    assert build_report(tmp_path)["groups"][0]["compliance"]["train_under_600s"] is True
    write_run(tmp_path, "0_seed1", {**run, "calibration_seconds": 37.0})  # 585 + 37 > 600
    assert build_report(tmp_path)["groups"][0]["compliance"]["train_under_600s"] is False


def test_self_generated_calibration_is_outside_the_training_budget(tmp_path):
    # Sampling calibration text from the trained model reads no training data, so it may run after
    # the cap; only calibration on training batches is added to train_seconds.
    run = {**ok_result(1, "f" * 64, 2.0, train_seconds=585.0), "calibration_seconds": 37.0}
    write_run(tmp_path, "0_seed1", {**run, "calibration_source": "self_generated"})
    assert build_report(tmp_path)["groups"][0]["compliance"]["train_under_600s"] is True
    write_run(tmp_path, "0_seed1", {**run, "calibration_source": "train"})
    assert build_report(tmp_path)["groups"][0]["compliance"]["train_under_600s"] is False


def test_broken_runs_are_listed_not_fatal(tmp_path):
    write_run(tmp_path, "0_seed1", ok_result(1, "d" * 64, 2.0))
    write_run(tmp_path, "1_seed2", None, raw_text='{"status": "ok", "seed": 2')  # truncated file
    write_run(tmp_path, "2_seed3", {"status": "running", "seed": 3, "config_digest": "d" * 64})
    write_run(tmp_path, "3_seed4", None, seed=4)  # a job that died before the pipeline wrote anything
    report = build_report(tmp_path)
    failed = {f["run_dir"]: f for g in report["groups"] for f in g["failed"]}
    assert failed["1_seed2"]["status"] == "unreadable" and "not valid JSON" in failed["1_seed2"]["error"]
    assert failed["2_seed3"]["status"] == "running" and "died hard" in failed["2_seed3"]["error"]
    assert failed["3_seed4"]["status"] == "missing" and failed["3_seed4"]["seed"] == 4
    assert report["runs_ok"] == 1


def test_ok_result_missing_a_key_is_reported_with_the_file_name(tmp_path):
    bad = ok_result(1, "e" * 64, 2.0)
    del bad["val_loss"]
    write_run(tmp_path, "0_seed1", bad)
    (group,) = build_report(tmp_path)["groups"]
    assert "0_seed1/result.json" in group["failed"][0]["error"] and "val_loss" in group["failed"][0]["error"]


def test_unknown_baseline_names_the_groups(tmp_path, capsys):
    sweep = record_sweep(tmp_path)
    assert main([str(sweep), "--baseline", "nope"]) == 2
    err = capsys.readouterr().err
    assert "'nope' matches no group" in err and "record" in err and "better" in err
    with pytest.raises(SystemExit):
        main([str(sweep), "--baseline-scores", "1.8,abc"])
    assert main([str(tmp_path / "missing")]) == 2


def test_labels_come_from_the_overrides_that_differ(tmp_path):
    common = ["arch=crownq_11l", "train=record_8xh100"]
    for i, q in enumerate(("gptq_int6", "rtn_int6")):
        for seed in (1, 2):
            overrides = common + [f"quantizer={q}", f"seed={seed}"]
            write_run(tmp_path, f"{i}{seed}", ok_result(seed, f"{i}" * 64, 2.0 + i / 10 + seed / 1000,
                                                         overrides=overrides))
    labels = [g["label"] for g in build_report(tmp_path, baseline="quantizer=gptq_int6")["groups"]]
    assert labels == ["quantizer=gptq_int6", "quantizer=rtn_int6"]


def test_wandb_aggregate_run_holds_the_tables(tmp_path, monkeypatch):
    from wandb_log_reader import read_offline_run

    from crownq.report.cli import log_report_to_wandb

    monkeypatch.setenv("WANDB_SILENT", "true")
    report = write_report(record_sweep(tmp_path / "sweep"), baseline="record")
    run_dir = log_report_to_wandb(report, mode="offline")
    logged = read_offline_run(run_dir)
    # The sweep's group prefix <sweep>-<date> (a folder without a date: a hash of its path).
    assert logged["run"]["job_type"] == "report" and logged["run"]["group"] == report["wandb_group"]
    assert report["wandb_group"].startswith("synthetic-")
    assert logged["summary"]["runs_ok"] == 6
    assert logged["summary"]["summary"]["_type"] == "table-file"
    assert logged["summary"]["per_seed"]["nrows"] == 6


def _sweep_config(sweep_dir):
    from omegaconf import OmegaConf

    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}})


def test_callback_writes_the_report_when_the_multirun_ends(tmp_path, capsys):
    from crownq.report.callback import SweepReportCallback

    sweep = record_sweep(tmp_path)
    callback = SweepReportCallback(baseline="record")
    callback.on_multirun_start(_sweep_config(sweep))
    callback.on_multirun_end(_sweep_config(sweep))
    assert "meets the record bar" in (sweep / "report" / "report.md").read_text()
    callback._report_if_pending()  # the exit hook does nothing once the report exists
    assert "ended with an error" not in capsys.readouterr().out


def test_callback_exit_hook_reports_when_the_launcher_raised(tmp_path, capsys):
    from crownq.report.callback import SweepReportCallback

    sweep = record_sweep(tmp_path)
    callback = SweepReportCallback()
    callback.on_multirun_start(_sweep_config(sweep))
    callback._report_if_pending()  # what atexit runs when on_multirun_end never came
    assert (sweep / "report" / "report.json").is_file()
    assert "ended with an error" in capsys.readouterr().out


def test_callback_never_raises_on_a_broken_report(tmp_path, capsys):
    from crownq.report.callback import SweepReportCallback

    callback = SweepReportCallback(baseline="no-such-group")
    callback.on_multirun_end(_sweep_config(record_sweep(tmp_path)))
    out = capsys.readouterr().out
    assert "could not write the report" in out and "crownq-report" in out


def test_summary_shows_model_bytes_and_counted_code_beside_the_uncompressed_program(tmp_path):
    sweep = tmp_path / "sweep"
    for seed, loss in ((1, 1.9), (2, 1.91)):
        result = ok_result(seed, "d" * 64, loss, artifact_bytes_total=15_000_000)
        result.update(artifact_bytes_code=65_382, artifact_bytes_model=15_000_000 - 65_382,
                      artifact_bytes_code_program=220_823, code_bytes_mode="compressed")
        write_run(sweep, f"{seed}_seed{seed}", result)
    report = write_report(sweep, None, None, None)
    line = next(x for x in report["markdown"].splitlines() if x.startswith("| "))
    assert "model bytes" in line and "code bytes (counted)" in line
    assert "| 14,934,618 ± 0 | 65,382 (compressed; program 220,823) |" in report["markdown"]
