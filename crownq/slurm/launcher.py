"""crownq's submitit launchers for Hydra (`hydra/launcher=slurm`, `slurm_8xh100`, `submitit_local`).

They extend hydra-submitit-launcher's and change four things:

1. **Config frozen at submission.** Each job's config is composed in the launching process and pickled
   with the job, so a job never re-reads YAML from the checkout (the upstream launcher recomposes it
   inside the job, when the files may have changed).
2. **Code snapshot** (`code_snapshot: true`, SLURM only): see `crownq.slurm.snapshot`.
3. **A job that dies hard is a failed seed, not a dead sweep.** Upstream, one job killed by the OOM
   killer (or a node failure, or the time limit) makes the whole multirun raise before the report runs.
   Here its `result.json` is rewritten as `status: failed` with SLURM's state and the end of its stderr,
   and the sweep goes on to the report, like a seed whose Python code raised.
4. **Preemption**: SLURM's warning signal makes training checkpoint before submitit requeues the job
   (`crownq.slurm.preemption`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, LocalQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from crownq.slurm.failures import hard_failure_result, still_alive
from crownq.slurm.preemption import PreemptionGuard
from crownq.slurm.snapshot import snapshot_python_command, take_snapshot
from crownq.sweep_checks import record_returns, validate_jobs

log = logging.getLogger(__name__)


@dataclasses.dataclass
class CrownqSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.crownq_launcher.SlurmLauncher"
    max_num_timeout: int = 3
    code_snapshot: bool = True


@dataclasses.dataclass
class CrownqLocalConf(LocalQueueConf):
    _target_: str = "hydra_plugins.crownq_launcher.LocalLauncher"


def _checked_params(params: dict[str, Any], schema: type) -> dict[str, Any]:
    """The launcher's fields, type-checked against `schema`; an unknown or mistyped field is named."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), params)
    except Exception as exc:  # omegaconf's errors name the key and the expected type
        fields = ", ".join(f.name for f in dataclasses.fields(schema) if not f.name.startswith("_"))
        raise ValueError(f"hydra.launcher ({schema.__name__}): {exc}\nvalid fields: {fields}") from exc
    checked = OmegaConf.to_container(merged, resolve=False)  # Hydra passes the fields already resolved
    assert isinstance(checked, dict)
    checked.pop("_target_", None)
    return checked


class CrownqSubmititLauncher(BaseSubmititLauncher):
    """The logic; Hydra only accepts launcher classes defined under `hydra_plugins`, so the concrete
    `SlurmLauncher`/`LocalLauncher` are declared in `hydra_plugins/crownq_launcher/`."""

    _SCHEMA: type = CrownqSlurmConf

    def __init__(self, **params: Any) -> None:
        plain = {k: OmegaConf.to_container(v, resolve=False) if OmegaConf.is_config(v) else v
                 for k, v in params.items()}
        checked = _checked_params(plain, self._SCHEMA)
        self.code_snapshot = bool(checked.pop("code_snapshot", False))
        super().__init__(**checked)

    # --- inside the job ------------------------------------------------------------------------------
    def __call__(self, sweep_config: DictConfig, job_num: int,  # type: ignore[override]
                 singleton_state: dict[type, Singleton]) -> JobReturn:
        import submitit

        Singleton.set_state(singleton_state)
        setup_globals()
        env = submitit.JobEnvironment()
        # A copy: run_job makes its config read-only, and a requeued job is re-run from the same args.
        sweep_config = copy.deepcopy(sweep_config)
        with read_write(sweep_config.hydra.job), open_dict(sweep_config.hydra.job):
            sweep_config.hydra.job.id = env.job_id
            sweep_config.hydra.job.num = job_num
        guard = PreemptionGuard().install() if self._EXECUTOR == "slurm" else None
        assert self.hydra_context is not None and self.task_function is not None
        try:
            ret = run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                          config=sweep_config, job_dir_key="hydra.sweep.dir",
                          job_subdir_key="hydra.sweep.subdir")
        except BaseException:
            if guard is not None:
                guard.settle(finished_ok=False)
            raise
        finished_ok = _finished_ok(ret)
        if guard is not None:
            guard.settle(finished_ok=finished_ok, training_stopped=_training_stop_reason(ret))
        if finished_ok:
            from crownq.distributed import shutdown

            shutdown()  # every rank finished: leave the process group together, not one by one at exit
        return ret

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on preemption/timeout: resubmit the same job (it resumes by itself)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    # --- in the launching process ----------------------------------------------------------------------
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # Every job's config is validated before anything is submitted (a bad cell costs no node time).
        composed = validate_jobs(self.hydra_context, self.config, job_overrides, initial_job_idx)
        configs, job_dirs = [], []
        for offset, (overrides, sweep_config) in enumerate(zip(job_overrides, composed)):
            idx = initial_job_idx + offset
            with open_dict(sweep_config.hydra):
                # Absolute, so neither the job's working directory nor a later clock changes it.
                sweep_config.hydra.sweep.dir = str(sweep_dir)
                sweep_config.hydra.job.num = idx
            configs.append(sweep_config)
            job_dirs.append(_job_dir(sweep_config))
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")

        snapshot = take_snapshot(sweep_dir) if self._EXECUTOR == "slurm" and self.code_snapshot else None
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **self._executor_init(snapshot))
        executor.update_parameters(**self._executor_parameters(snapshot))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        jobs = executor.map_array(self, configs, [initial_job_idx + i for i in range(len(configs))],
                                  [Singleton.get_state()] * len(configs))
        returns = []
        for job, overrides, job_dir, cfg in zip(jobs, job_overrides, job_dirs, configs):
            try:
                ret = self._result_of(job)  # rank 0's value
                log.info(f"job {job.job_id}: finished with a result")
            except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError) as exc:
                result = hard_failure_result(job, exc, job_dir, cfg)
                log.error(f"job {job.job_id} died without a result ({result['slurm_state']}): recorded as a "
                          f"failed seed in {job_dir}")
                ret = JobReturn(overrides=list(overrides), working_dir=str(job_dir), _return_value=result,
                                status=JobStatus.COMPLETED, task_name=str(cfg.hydra.job.name))
            returns.append(ret)
        record_returns(returns)  # a failed seed makes the sweep's exit status non-zero
        return returns

    def _result_of(self, job: Any, poll_seconds: float = 5.0) -> Any:
        """Rank 0's return value. A job submitit reports as ended without a result while slurmctld still
        has it queued or running (a requeue after preemption: the killed attempt's sacct row says FAILED
        until the next attempt starts) is waited for again, not recorded as a failed seed."""
        import time

        import submitit

        while True:
            try:
                return job.results()[0]
            except submitit.core.utils.UncompletedJobError:
                if self._EXECUTOR != "slurm" or not still_alive(str(job.job_id)):
                    raise
                log.info(f"job {job.job_id}: read as ended but SLURM still has it (requeued?): waiting")
                time.sleep(poll_seconds)

    def _executor_init(self, snapshot: Path | None) -> dict[str, Any]:
        init: dict[str, Any] = {"folder": self.params["submitit_folder"]}
        if self._EXECUTOR == "slurm":
            init["slurm_max_num_timeout"] = self.params["max_num_timeout"]
        if snapshot is not None:
            log.info(f"code snapshot for these jobs: {snapshot}")
            init["slurm_python"] = snapshot_python_command(snapshot)
        return init

    def _executor_parameters(self, snapshot: Path | None) -> dict[str, Any]:
        base = {f.name for f in dataclasses.fields(BaseQueueConf)}
        skip = {"submitit_folder", "max_num_timeout"}
        params = {k if k in base else f"{self._EXECUTOR}_{k}": v
                  for k, v in self.params.items() if k not in skip}
        if snapshot is not None:
            # Tells the job (and anyone reading its sbatch script) which code it runs.
            params["slurm_setup"] = [*(params.get("slurm_setup") or []),
                                     f"export CROWNQ_CODE_SNAPSHOT={shlex.quote(str(snapshot))}"]
        return params


def _job_dir(sweep_config: DictConfig) -> Path:
    """Where run_job will put this job's outputs (hydra.sweep.dir / hydra.sweep.subdir)."""
    try:
        return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
    except Exception:  # a subdir that needs job-time values (e.g. hydra.job.id): fall back to the number
        return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.job.num)


def _training_stop_reason(ret: JobReturn) -> str | None:
    """The reason of a `TrainingPreempted` raised by the task (run_job stores the exception)."""
    exc = ret._return_value if ret.status == JobStatus.FAILED else None
    if exc is not None and type(exc).__name__ == "TrainingPreempted":
        return str(getattr(exc, "reason", "") or "preempted")
    return None


def _finished_ok(ret: JobReturn) -> bool:
    if ret.status != JobStatus.COMPLETED:
        return False
    value = ret._return_value
    return not (isinstance(value, dict) and value.get("status") not in (None, "ok"))
