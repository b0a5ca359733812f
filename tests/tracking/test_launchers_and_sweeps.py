"""Launcher names (crownq's own; upstream's refused with the name to use), sweeps as a config group
without the repository root on the search path, and the smoke preset."""

import subprocess
import sys

import pytest
from tracking_helpers import REPO, compose

from crownq.paths import conf_dir, sweeps_dir


def test_launcher_options_are_crownqs_own_names():
    names = sorted(p.stem for p in (conf_dir() / "hydra" / "launcher").glob("*.yaml"))
    assert names == ["crownq_local", "crownq_slurm", "crownq_slurm_8xh100", "local"]


@pytest.mark.parametrize(("upstream", "ours"), [("submitit_slurm", "crownq_slurm"),
                                                 ("submitit_local", "crownq_local")])
def test_upstream_launcher_is_refused_before_any_job(tmp_path, upstream, ours):
    proc = subprocess.run([sys.executable, str(REPO / "launch.py"), "-m", f"hydra/launcher={upstream}",
                           "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"Use hydra/launcher={ours}" in proc.stderr
    assert not list(tmp_path.rglob("result.json"))  # nothing ran


def test_every_sweep_file_is_an_option_of_the_sweeps_group():
    from hydra.core.config_store import ConfigStore

    compose()  # registers the configs
    stored = {name.removesuffix(".yaml") for name in ConfigStore.instance().list("sweeps")}
    assert stored == {p.stem for p in sweeps_dir().glob("*.yaml")}
    cfg = compose(["+sweeps=ablate_quantizer"])
    assert cfg.sweep == "ablate_quantizer"


def test_tab_completion_offers_config_groups_not_repository_folders(tmp_path):
    env = {"COMP_LINE": "python launch.py +", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(REPO / "launch.py"), "-sc", "query=bash"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    offered = proc.stdout.split()
    assert "+sweeps=" in offered and "+preset=" in offered
    assert not [o for o in offered if o.startswith(("+.git", "+tests", "+crownq", "+docs"))], offered


def test_smoke_preset_is_one_override_that_shrinks_every_stage():
    cfg = compose(["+preset=smoke"])
    default = compose()
    assert cfg.train.iterations < 10 <= default.train.iterations
    assert cfg.quantizer.calibration_batches <= 2
    assert 0 < cfg.eval.max_val_tokens <= 4096
