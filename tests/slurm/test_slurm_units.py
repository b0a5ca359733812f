"""The launcher layer without a cluster: launcher options, field checking, code snapshot, hard-failure
results and rank discovery from SLURM's environment. Fast; no SLURM needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from slurm_helpers import REPO

from crownq.config import register_configs
from crownq.slurm.failures import hard_failure_result
from crownq.slurm.launcher import CrownqLocalConf, CrownqSlurmConf, _checked_params
from crownq.slurm.snapshot import snapshot_python_command, take_snapshot


def launcher_node(option: str) -> dict:
    register_configs()
    os.environ.setdefault("CROWNQ_ROOT", str(REPO))
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={option}"], return_hydra_config=True)
    node = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert isinstance(node, dict)
    return node


@pytest.mark.parametrize(("option", "schema"), [("crownq_slurm", CrownqSlurmConf),
                                                ("crownq_slurm_8xh100", CrownqSlurmConf),
                                                ("crownq_local", CrownqLocalConf)])
def test_launcher_options_pass_their_schema(option, schema):
    node = launcher_node(option)
    checked = _checked_params(node, schema)
    assert checked["submitit_folder"].startswith("${hydra.sweep.dir}/")  # inside the sweep folder
    if schema is CrownqSlurmConf:
        assert node["_target_"] == "hydra_plugins.crownq_launcher.SlurmLauncher"
        assert checked["max_num_timeout"] >= 1 and checked["code_snapshot"] is True


def test_slurm_8xh100_is_one_node_one_task_per_gpu_with_record_budget():
    node = launcher_node("crownq_slurm_8xh100")
    assert (node["nodes"], node["tasks_per_node"], node["gpus_per_node"]) == (1, 8, 8)
    train_cap_s, eval_cap_s = 600, 600  # the record's limits; export/compile/data need margin on top
    assert node["timeout_min"] * 60 >= train_cap_s + eval_cap_s + 300
    assert node["signal_delay_s"] < (node["timeout_min"] * 60 - train_cap_s)


def test_local_option_is_hydras_basic_launcher():
    assert launcher_node("local")["_target_"].endswith("BasicLauncher")


def test_misspelt_or_mistyped_launcher_field_is_named():
    with pytest.raises(ValueError, match="partitoin"):
        _checked_params({"partitoin": "gpu"}, CrownqSlurmConf)
    with pytest.raises(ValueError, match="timeout_min"):
        _checked_params({"timeout_min": "an hour"}, CrownqSlurmConf)
    with pytest.raises(ValueError, match="code_snapshot"):
        _checked_params({"code_snapshot": True}, CrownqLocalConf)  # snapshot is a SLURM-only field


def test_snapshot_is_imported_ahead_of_the_checkout(tmp_path):
    """The job command built for a snapshot imports `crownq` from the snapshot even when started in the
    checkout (whose own crownq/ would otherwise win as the working directory)."""
    first, second = take_snapshot(tmp_path), take_snapshot(tmp_path)
    assert first.name == "0" and second.name == "1"  # an earlier snapshot (queued jobs) is never reused
    assert (first / "crownq" / "slurm" / "snapshot.py").is_file()
    assert (first / "hydra_plugins" / "crownq_launcher" / "__init__.py").is_file()
    assert (first / "conf" / "config.yaml").is_file() and not list(first.rglob("__pycache__"))
    # Stand in for submitit's entry point inside the snapshot: it reports what the job would import.
    fake = first / "submitit" / "core"
    fake.mkdir(parents=True)
    (first / "submitit" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "_submit.py").write_text("import sys, crownq\nprint(crownq.__file__)\nprint(sys.argv[1:])\n")
    command = snapshot_python_command(first) + " -u -m submitit.core._submit /some/folder"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    imported, argv = out.stdout.splitlines()
    assert imported == str(first / "crownq" / "__init__.py")
    assert argv == "['/some/folder']"


class FakeJob:
    job_id = "41_2"
    state = "FAILED"

    def get_info(self, mode: str = "standard") -> dict:
        return {"State": "OUT_OF_MEMORY"}

    def stderr(self) -> str:
        return "\n".join(f"line {i}" for i in range(100))


def test_hard_failure_overwrites_running_but_keeps_a_run_explained_failure(tmp_path):
    cfg = OmegaConf.create({"seed": 7})
    running = {"seed": 7, "status": "running", "config_digest": "abc"}
    (tmp_path / "result.json").write_text(json.dumps(running))
    res = hard_failure_result(FakeJob(), RuntimeError("job died"), tmp_path, cfg)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk == res and res["status"] == "failed" and res["config_digest"] == "abc"
    assert res["slurm_state"] == "OUT_OF_MEMORY" and "OUT_OF_MEMORY" in res["error"]
    assert res["stderr_tail"].splitlines()[-1] == "line 99" and len(res["stderr_tail"].splitlines()) == 30

    explained = {"seed": 7, "status": "failed", "error": "ValueError: bad shard"}
    (tmp_path / "result.json").write_text(json.dumps(explained))
    res = hard_failure_result(FakeJob(), RuntimeError("job died"), tmp_path, cfg)
    assert res["error"] == "ValueError: bad shard" and res["slurm_job_id"] == "41_2"

    fresh = tmp_path / "never_started"
    res = hard_failure_result(FakeJob(), RuntimeError("job died"), fresh, cfg)
    assert res["seed"] == 7 and res["status"] == "failed" and (fresh / "result.json").is_file()


def test_ranks_come_from_slurm_task_environment():
    """What a 2-task submitit job exports: task 1 becomes RANK 1 of 2, LOCAL_RANK 1, one master."""
    code = ("import os; from crownq.distributed import _export_submitit_env as e; e(); "
            "print(os.environ['RANK'], os.environ['WORLD_SIZE'], os.environ['LOCAL_RANK'], "
            "os.environ['MASTER_ADDR'], os.environ['MASTER_PORT'])")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE"))}
    env.update({"SLURM_JOB_ID": "1234", "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1",
                "SLURM_NODEID": "0", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "localhost",
                "SLURM_STEP_NODELIST": "localhost", "SUBMITIT_EXECUTOR": "slurm", "PYTHONPATH": str(REPO)})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    rank, world, local, addr, port = out.stdout.split()
    assert (rank, world, local, addr) == ("1", "2", "1", "localhost") and int(port) > 1024


def test_cluster_scripts_are_executable_and_parse():
    for name in ("start.sh", "stop.sh"):
        script = REPO / "scripts" / "slurm" / name
        assert os.access(script, os.X_OK), f"{script} is not executable"
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert Path(REPO / "scripts/slurm/env.sh").read_text().count("SLURM_CONF") >= 1


def test_a_requeued_job_read_as_ended_is_waited_for_not_recorded_as_failed(monkeypatch):
    """submitit can read a job that `scontrol requeue` just restarted as FAILED (the killed attempt's sacct
    row) and raise UncompletedJobError; while squeue still lists the job, the launcher waits again."""
    import submitit

    import crownq.slurm.launcher as launcher
    from crownq.slurm.failures import ALIVE_STATES, still_alive

    class Job:
        job_id = "47_0"

        def __init__(self, failures: int):
            self.failures = failures

        def results(self):
            if self.failures:
                self.failures -= 1
                raise submitit.core.utils.UncompletedJobError("job 47_0 ended in state FAILED, no result")
            return ["rank 0's value"]

    slurm_self = type("Slurm", (), {"_EXECUTOR": "slurm"})()
    squeue = iter(["PENDING", "RUNNING"])
    monkeypatch.setattr(launcher, "still_alive", lambda job_id: next(squeue) in ALIVE_STATES)
    result_of = launcher.CrownqSubmititLauncher._result_of
    assert result_of(slurm_self, Job(failures=2), poll_seconds=0) == "rank 0's value"
    # Gone from squeue: it really ended, so the error reaches the hard-failure path.
    monkeypatch.setattr(launcher, "still_alive", lambda job_id: False)
    with pytest.raises(submitit.core.utils.UncompletedJobError):
        result_of(slurm_self, Job(failures=1), poll_seconds=0)
    # The local executor has no squeue to ask.
    local_self = type("Local", (), {"_EXECUTOR": "local"})()
    with pytest.raises(submitit.core.utils.UncompletedJobError):
        result_of(local_self, Job(failures=1), poll_seconds=0)
    # squeue missing or not knowing the job: not alive.
    monkeypatch.setenv("PATH", "/nonexistent")
    assert not still_alive("47_0")
