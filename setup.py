"""Build hook only (pyproject.toml holds the metadata): ships `conf/` and `sweeps/` inside the wheel as
`crownq/_conf` and `crownq/_sweeps`, so a non-editable install (`pip install .`, `pip install
git+URL`) runs `crownq-run` and `crownq-describe` from any folder. A checkout and an editable install
read `conf/` and `sweeps/` in place (crownq/paths.py picks whichever exists)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = {"conf": "_conf", "sweeps": "_sweeps"}  # checkout folder -> folder inside the crownq package


class BuildPyWithConfigs(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # editable installs read the checkout's folders
        for src, dst in SHIPPED.items():
            if not (ROOT / src).is_dir():
                raise FileNotFoundError(f"setup.py: {ROOT / src} is missing; build from a full checkout")
            target = Path(self.build_lib) / "crownq" / dst
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithConfigs})
