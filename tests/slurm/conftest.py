"""Fixtures for the tests that run against the project's real single-node SLURM cluster.

They skip (with the reason) when no cluster is reachable: start one with `scripts/slurm/start.sh` and
`source scripts/slurm/env.sh`. What SLURM said (sinfo, sacct) is collected and printed in a section at
the end of the pytest run, so CI logs show the jobs really went through slurmctld.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from slurm_helpers import EVIDENCE, record, slurm


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    if not os.environ.get("SLURM_CONF"):
        pytest.skip("no SLURM cluster: SLURM_CONF is unset "
                    "(run scripts/slurm/start.sh, then source scripts/slurm/env.sh)")
    if shutil.which("sinfo") is None:
        pytest.skip("no SLURM cluster: sinfo is not installed (scripts/slurm/start.sh installs it)")
    try:
        info = slurm("sinfo", "-o", "%P %a %D %T %c %m %N", timeout=20)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"no SLURM cluster: sinfo failed ({exc})")
    if " idle " not in info and " mixed " not in info and " allocated " not in info:
        pytest.skip(f"no usable SLURM node:\n{info}")
    record("sinfo at the start of the SLURM tests", info)
    return info


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if EVIDENCE:
        terminalreporter.section("SLURM cluster evidence (sinfo / sacct)")
        for block in EVIDENCE:
            terminalreporter.write_line(block)
