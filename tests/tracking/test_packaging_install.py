"""`pip install .` (non-editable) gives a working install: build the wheel from a copy of the checkout,
install it into a fresh virtualenv (dependencies from this interpreter's site-packages), and run a smoke
run and crownq-describe from an empty folder."""

import json
import shutil
import subprocess
import sys
import venv

import pytest
from tracking_helpers import REPO

pytestmark = pytest.mark.slow
_SKIP = shutil.ignore_patterns(".git", "outputs", "multirun", ".venv", "build", "dist", "*.egg-info",
                               "__pycache__", ".crownq-cache", "wandb", ".pytest_cache", ".ruff_cache")


def run(cmd, cwd, timeout=600):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_wheel_install_runs_from_an_empty_folder(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=_SKIP)
    run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
         "-w", tmp_path / "wheels"], cwd=src)
    (wheel,) = (tmp_path / "wheels").glob("crownq-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    bin_dir = env_dir / "bin"
    run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", wheel], cwd=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    where = run([bin_dir / "python", "-c", "import crownq, crownq.paths as p; print(crownq.__file__); "
                 "print(p.conf_dir())"], cwd=empty).stdout.split()
    assert all(str(env_dir) in w for w in where), where  # the installed copy, not the checkout
    run([bin_dir / "crownq-run", "+preset=smoke", "logger=none", "hydra.run.dir=run"], cwd=empty)
    result = json.loads((empty / "run" / "result.json").read_text())
    assert result["status"] == "ok" and (empty / "run" / "crownq.log").stat().st_size > 0
    described = run([bin_dir / "crownq-describe", "arch=crownq_11l"], cwd=empty).stdout
    assert "model_params: 27124848" in described
