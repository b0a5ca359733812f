"""Inside a SLURM job: turn SLURM's signals into "checkpoint at the end of this step, then requeue".

Two ways SLURM stops a job early, and what happens here:

* **Warning signal** (`#SBATCH --signal=USR2@signal_delay_s`, sent before the time limit; also
  `scancel --signal=USR2 JOB`): submitit's own handler would requeue at once, losing the steps since the
  last checkpoint. This guard takes over that signal: it asks the training loop to stop
  (`crownq.train.signals.request_stop`); the loop saves a checkpoint at the end of its step and raises
  `TrainingPreempted`; the pipeline records `status: interrupted` and re-raises; then `settle()` hands
  over to submitit's handler, which calls the launcher's `checkpoint()` (same job, same overrides),
  runs `scontrol requeue` and exits. Requeues on timeout are capped by `max_num_timeout`.
* **SIGTERM** (`scontrol requeue`, preemption in REQUEUE mode, `scancel`, the hard time limit): SLURM
  itself decides what happens next. The training loop's own SIGTERM handler saves a checkpoint; `settle()`
  exits without writing a submitit result, so a requeued job is not mistaken for a finished one.

The requeued job runs the same pickled call: same output folder, where `train_model` finds its checkpoint
and resumes, and wandb resumes the run id stored there.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


class PreemptionGuard:
    """Installed once per job process, before the task runs; `settle()` is called after it returns."""

    def __init__(self, wait_for_kill_s: float = 300.0) -> None:
        self.received: str | None = None
        self._warning_sig: int | None = None
        self._submitit_handler: Any = None
        self._wait_for_kill_s = wait_for_kill_s
        self._request_stop: Callable[[str], None] | None = None
        self.rank = 0

    def install(self) -> PreemptionGuard:
        import submitit

        env = submitit.JobEnvironment()
        self.rank = env.global_rank
        # submitit's preemption signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise).
        self._warning_sig = env._usr_sig()
        self._submitit_handler = signal.getsignal(self._warning_sig)
        self._request_stop = _training_stop_request()  # imported now: never import inside a handler
        signal.signal(self._warning_sig, self._on_warning)
        signal.signal(signal.SIGTERM, self._on_terminate)
        return self

    def _on_warning(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name
        log.warning("rank %s: caught %s (SLURM preemption/time-limit warning): asking training to "
                    "checkpoint and stop", self.rank, self.received)
        if self._request_stop is not None:
            self._request_stop(f"{self.received} from SLURM")

    def _on_terminate(self, signum: int, frame: FrameType | None) -> None:
        # Only reached outside the training loop (which installs its own SIGTERM handler).
        self.received = signal.Signals(signum).name
        log.warning("rank %s: caught SIGTERM outside training", self.rank)

    def settle(self, finished_ok: bool, training_stopped: str | None = None) -> None:
        """After the task: nothing to do if it finished; otherwise requeue (warning) or exit (SIGTERM).

        `training_stopped` is the reason carried by `TrainingPreempted` when the training loop stopped on
        a request (its own SIGTERM/SIGUSR1 handler, this guard's warning, or a debug hook).
        """
        reason = training_stopped or self.received
        if finished_ok or reason is None:
            return
        if "SIGTERM" in reason:
            log.warning("rank %s: stopped by SIGTERM; leaving the requeue (or cancel) to SLURM", self.rank)
            raise SystemExit(143)  # SystemExit: submitit writes no result, the job is not "done"
        if self.rank != 0:
            # Rank 0 requeues the whole job; exiting here could take the step down before it does.
            log.info("rank %s: waiting for rank 0 to requeue the job", self.rank)
            time.sleep(self._wait_for_kill_s)
            raise SystemExit(143)
        handler = self._submitit_handler
        if not callable(handler):
            raise RuntimeError(f"cannot requeue after {reason}: no submitit handler (not a submitit job?)")
        log.warning("rank 0: training checkpointed (%s); requeueing through submitit", reason)
        handler(self._warning_sig, None)  # checkpoint() -> scontrol requeue -> sys.exit, or raises


def _training_stop_request() -> Callable[[str], None] | None:
    try:
        from crownq.train.signals import request_stop
    except ImportError:  # a task without crownq's training loop: nothing to ask, settle() still requeues
        return None
    return request_stop
