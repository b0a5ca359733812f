"""The bundle's module list is the computed import closure: nothing the recipe imports is missing,
nothing only tests or tools import is in it, and a bundle never falls back to an installed crownq."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crownq.submit.bundle import ENTRY, PACKAGE_PARENT, build_bundle, render
from crownq.submit.closure import ClosureError, import_closure

# Tools and test/benchmark helpers: a submission never runs them.
NOT_SHIPPED = ("crownq.describe", "crownq.report", "crownq.slurm", "crownq.submit.cli",
               "crownq.submit.records", "crownq.submit.readme", "crownq.data.cli", "crownq.data.fineweb")


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_closure_follows_every_kind_of_import(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": ("from typing import TYPE_CHECKING\nimport numpy\nimport pkg.b\n"
                     "if TYPE_CHECKING:\n    import pkg.typing_only\n"
                     "def lazy():\n    from . import c\n"),
        "pkg/b.py": "from pkg.sub import x\nimport os\n",
        "pkg/c.py": "from .sub.x import VALUE\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/x.py": "VALUE = 1\n",
        "pkg/typing_only.py": "",
        "pkg/unused.py": "",
    })
    closure = import_closure("pkg.a", tmp_path)
    assert set(closure.modules) == {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.sub", "pkg.sub.x"}
    assert closure.packages == {"pkg", "pkg.sub"}
    assert closure.external == {"numpy"}  # os is the standard library


def test_an_import_of_a_missing_module_is_an_error_naming_it(tmp_path):
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "def f():\n    import pkg.gone\n"})
    with pytest.raises(ClosureError, match="pkg.gone is imported"):
        import_closure("pkg.a", tmp_path)


def test_recipe_closure_has_what_the_run_imports_and_no_test_or_tool_module():
    modules = set(import_closure(ENTRY, PACKAGE_PARENT).modules)
    # Modules the recipe does import (the old hand-kept glob missed distributed.py and the schemas).
    for needed in ("crownq.pipeline", "crownq.distributed", "crownq.config.train", "crownq.config.quantizer",
                   "crownq.quant.gptq", "crownq.quant.budget", "crownq.eval.sliding", "crownq.train.loop"):
        assert needed in modules, needed
    for name in modules:
        assert not name.endswith((".bench", ".reference")), f"test-only module {name} is bundled"
        assert not name.startswith(NOT_SHIPPED), f"tool module {name} is bundled"
    # Benchmarks and reference implementations live outside the package now.
    assert not list((PACKAGE_PARENT / "crownq").rglob("bench*.py"))
    assert not list((PACKAGE_PARENT / "crownq").rglob("reference.py"))


def test_a_bundle_missing_a_module_fails_instead_of_using_the_installed_package(tmp_path):
    bundle = build_bundle({"quantizer": {"code_bytes_mode": "raw"}}, "raw")
    closure = import_closure(ENTRY, PACKAGE_PARENT)
    sources = {n: p.read_text() for n, p in closure.modules.items() if n != "crownq.distributed"}
    script = tmp_path / "train_gpt.py"
    script.write_text(render(sources, closure.packages, {"quantizer": {"code_bytes_mode": "raw"}}, "raw"))
    # crownq is installed in this environment, so only the bundle's own importer can make this fail.
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "crownq.distributed is not in this bundle" in proc.stderr
    assert "crownq.distributed" in bundle.modules
