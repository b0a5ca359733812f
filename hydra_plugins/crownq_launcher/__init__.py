"""Hydra plugin entry for crownq's launchers (`hydra/launcher=crownq_local|crownq_slurm|crownq_slurm_8xh100`).

Hydra instantiates launchers only from classes defined inside the `hydra_plugins` namespace package, so
the concrete classes are declared here; the logic lives in `crownq.slurm.launcher`.

The names are crownq's own: hydra-submitit-launcher's `submitit_local`/`submitit_slurm` would run a
sweep without crownq's code snapshot, failed-seed results and preemption checkpoints, so
`LauncherGuard` (a Hydra callback in conf/config.yaml) refuses them with the name to use instead.
"""

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from crownq.slurm.launcher import CrownqLocalConf, CrownqSlurmConf, CrownqSubmititLauncher

# Upstream launcher class -> crownq's option that does the same and more.
UPSTREAM_TO_CROWNQ = {
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher": "crownq_local",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher": "crownq_slurm",
}


class SlurmLauncher(CrownqSubmititLauncher):
    _EXECUTOR = "slurm"
    _SCHEMA = CrownqSlurmConf


class LocalLauncher(CrownqSubmititLauncher):
    _EXECUTOR = "local"
    _SCHEMA = CrownqLocalConf


def upstream_launcher_message(target: str) -> str | None:
    """Why a launcher class may not run a crownq sweep, or None when it may."""
    ours = UPSTREAM_TO_CROWNQ.get(target)
    if ours is None:
        return None
    return (f"crownq: hydra/launcher={'submitit_local' if ours == 'crownq_local' else 'submitit_slurm'} "
            f"is hydra-submitit-launcher's own launcher, which would lose crownq's code snapshot, "
            f"failed-seed results and preemption checkpoints. Use hydra/launcher={ours} (same fields"
            f"{', plus code_snapshot' if ours == 'crownq_slurm' else ''}); see docs/slurm.md.")


class LauncherGuard(Callback):
    """Stops a multirun before any job starts when the launcher is upstream's submitit launcher."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        message = upstream_launcher_message(str(config.hydra.launcher.get("_target_", "")))
        if message:
            # SystemExit, not an exception: Hydra turns callback exceptions into warnings and goes on.
            raise SystemExit(message)


class CrownqBasicLauncher(BasicLauncher):
    """Hydra's basic launcher (`hydra/launcher=local`, jobs one after another in this process), plus:
    every job's config is validated before the first job runs, failed jobs are recorded so the sweep
    exits non-zero (crownq.sweep_checks), and a job stopped by SIGTERM/SIGUSR1 stops the sweep: in this
    process a signal is the user or the machine ending the whole multirun, not a scheduler that will
    requeue one job (upstream's basic launcher would record it as failed and start the next job)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from crownq.sweep_checks import record_returns, validate_jobs
        from crownq.train.signals import TrainingPreempted

        assert self.hydra_context is not None and self.config is not None
        validate_jobs(self.hydra_context, self.config, job_overrides, initial_job_idx)
        returns: list[JobReturn] = []
        for offset, overrides in enumerate(job_overrides):
            returns.extend(super().launch([overrides], initial_job_idx + offset))
            stopped = getattr(returns[-1], "_return_value", None)
            if isinstance(stopped, TrainingPreempted):
                record_returns(returns)
                not_run = len(job_overrides) - offset - 1
                job = initial_job_idx + offset
                raise SystemExit(f"crownq: sweep stopped by {stopped.reason} in job #{job} "
                                 f"({' '.join(overrides)}); its checkpoint: {stopped.checkpoint}. {not_run} "
                                 f"job(s) not started; finished results are kept (crownq-report "
                                 f"{self.config.hydra.sweep.dir} reports them)")
        record_returns(returns)
        return returns
