"""The bundle's module list is the computed import closure: nothing the recipe imports is missing,
nothing only tests or tools import is in it, a module gated off by the configuration (BUNDLE_WHEN) is
left out and named if asked for, and a bundle never falls back to an installed crownq."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_compose import compose_run_config

from crownq.results import digest_payload
from crownq.submit.bundle import ENTRY, PACKAGE_PARENT, build_bundle, render
from crownq.submit.closure import ClosureError, import_closure

# Tools and test/benchmark helpers: a submission never runs them.
NOT_SHIPPED = ("crownq.describe", "crownq.report", "crownq.slurm", "crownq.submit.cli",
               "crownq.submit.records", "crownq.submit.readme", "crownq.data.cli", "crownq.data.fineweb")
# Run-folder tooling around the recipe (crownq.pipeline) that a bundled run replaces with its runtime,
# and the bundle builder itself.
NOT_BUNDLED = ("crownq.pipeline", "crownq.tracking", "crownq.reuse", "crownq.rescore", "crownq.run_lock",
               "crownq.config.validate", "crownq.sweep_checks", "crownq.entry", "crownq.submit.bundle",
               "crownq.submit.closure", "crownq.submit.strip")
RECORD = ["logger=none", "arch=crownq_11l", "data=fineweb_sp1024", "train=record_8xh100",
          "quantizer=gptq_int6", "averaging=swa_ema", "eval=sliding64"]
TTT_GATED = ("crownq.eval.ttt", "crownq.eval.lora_ttt", "crownq.eval.lora", "crownq.eval.documents",
             "crownq.eval.phased_ttt")


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


def test_a_module_gated_off_is_left_out_with_what_only_it_imports(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": ("def run(cfg):\n    if cfg.fancy:\n        from pkg import fancy\n"
                     "    from pkg import shared\n"),
        "pkg/fancy.py": ("import pkg.fancy_helper\nimport pkg.shared\n"
                         "BUNDLE_WHEN = 'cfg.fancy and cfg.size > 2'\n"),
        "pkg/fancy_helper.py": "",
        "pkg/shared.py": "",
    })
    off = import_closure("pkg.a", tmp_path, {"fancy": False, "size": 4})
    assert set(off.modules) == {"pkg", "pkg.a", "pkg.shared"}
    assert off.excluded == {"pkg.fancy": "cfg.fancy and cfg.size > 2"}
    on = import_closure("pkg.a", tmp_path, {"fancy": True, "size": 4})
    assert {"pkg.fancy", "pkg.fancy_helper"} <= set(on.modules) and not on.excluded
    # Without a configuration every module counts (the conservative, configuration-free closure).
    assert "pkg.fancy" in import_closure("pkg.a", tmp_path).modules
    with pytest.raises(ClosureError, match="cfg.size is not in the configuration"):
        import_closure("pkg.a", tmp_path, {"fancy": True})


def test_an_import_time_import_of_a_gated_module_is_refused(tmp_path):
    """Gating only works through lazy imports: a top-level import would run whatever the switch says."""
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.fancy import thing\n",
        "pkg/fancy.py": "thing = 1\nBUNDLE_WHEN = 'cfg.fancy'\n",
    })
    with pytest.raises(ClosureError, match="pkg.a imports pkg.fancy at import time.*'cfg.fancy'"):
        import_closure("pkg.a", tmp_path, {"fancy": False})
    assert "pkg.fancy" in import_closure("pkg.a", tmp_path, {"fancy": True}).modules


def test_recipe_closure_has_what_the_run_imports_and_no_test_or_tool_module():
    config = digest_payload(compose_run_config(RECORD))
    modules = set(import_closure(ENTRY, PACKAGE_PARENT, config).modules)
    # Modules the recipe does import (the old hand-kept glob missed distributed.py and the schemas).
    for needed in ("crownq.recipe", "crownq.distributed", "crownq.config.train", "crownq.config.quantizer",
                   "crownq.quant.gptq", "crownq.quant.budget", "crownq.eval.sliding", "crownq.train.loop",
                   "crownq.submit.runtime", "crownq.submit.wrapper", "crownq.data.sidecar"):
        assert needed in modules, needed
    for name in modules:
        assert not name.endswith((".bench", ".reference")), f"test-only module {name} is bundled"
        assert not name.startswith(NOT_SHIPPED + NOT_BUNDLED), f"tool module {name} is bundled"
    # The record's configuration: shard data, sliding scoring, lzma sections, GPTQ on training batches.
    for gated in TTT_GATED + ("crownq.data.embedded", "crownq.data.corpus", "crownq.quant.lqer",
                              "crownq.quant.pergroup", "crownq.quant.rans", "crownq.quant.self_generated"):
        assert gated not in modules, gated
    # Benchmarks and reference implementations live outside the package now.
    assert not list((PACKAGE_PARENT / "crownq").rglob("bench*.py"))
    assert not list((PACKAGE_PARENT / "crownq").rglob("reference.py"))


def test_the_switches_bring_their_modules_in():
    frontier = digest_payload(compose_run_config([
        "logger=none", "data=embedded_caseops_4096", "eval=phased_ttt", "quantizer=frontier",
        "frontier=full"]))
    modules = set(import_closure(ENTRY, PACKAGE_PARENT, frontier).modules)
    for needed in ("crownq.eval.lora_ttt", "crownq.eval.lora", "crownq.eval.documents",
                   "crownq.eval.phased_ttt", "crownq.data.embedded", "crownq.data.caseops",
                   "crownq.quant.lqer", "crownq.quant.pergroup", "crownq.quant.rans", "crownq.quant.sdclip",
                   "crownq.model.lanes", "crownq.model.recurrence"):
        assert needed in modules, needed
    assert "crownq.eval.ttt" not in modules  # the older chunked TTT is its own switch


def _bundle_file(tmp_path: Path, overrides: list[str], mode: str = "raw") -> Path:
    script = tmp_path / "train_gpt.py"
    script.write_bytes(build_bundle(digest_payload(compose_run_config(overrides)), mode).file)
    return script


def test_a_gated_module_asked_for_in_a_bundle_names_its_switch(tmp_path):
    script = _bundle_file(tmp_path, ["logger=none"])
    probe = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='bundle'); "
             "import crownq.eval.lora_ttt")
    proc = subprocess.run([sys.executable, "-c", probe, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert ("crownq.eval.lora_ttt is not in this bundle: it is bundled only when cfg.eval.lora_ttt.enabled"
            in proc.stderr), proc.stderr[-2000:]


def test_a_bundle_missing_a_module_fails_instead_of_using_the_installed_package(tmp_path):
    config = digest_payload(compose_run_config(["logger=none", "quantizer.code_bytes_mode=raw"]))
    bundle = build_bundle(config, "raw")
    closure = import_closure(ENTRY, PACKAGE_PARENT, config)
    sources = {n: p.read_text() for n, p in closure.modules.items() if n != "crownq.distributed"}
    script = tmp_path / "train_gpt.py"
    script.write_text(render(sources, closure.packages, config, "raw", closure.excluded))
    # crownq is installed in this environment, so only the bundle's own importer can make this fail.
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "crownq.distributed is not in this bundle" in proc.stderr
    assert "crownq.distributed" in bundle.modules


# Tiny runs of configurations that switch gated modules on: each bundle must run to a result with only
# its own modules (a gated module imported on a path its switch does not guard fails here by name).
TINY_RUN = ["logger=none", "train.iterations=2", "train.train_batch_tokens=512", "train.seq_len=64",
            "train.warmdown_iters=1", "train.val_every=0", "train.val_max_tokens=512",
            "eval.max_val_tokens=512", "eval.batch_seqs=4", "quantizer.calibration_batches=1"]


@pytest.mark.slow
@pytest.mark.parametrize("switches", [
    [],
    ["frontier=full", "quantizer=frontier", "quantizer.codec=rans"],
    ["data=embedded_caseops_4096", "eval=phased_ttt", "eval.lora_ttt.batch_docs=2", "eval.lora_ttt.rank=2",
     "eval.phased_ttt.prefix_docs=3", "quantizer.calibration_source=self_generated"],
], ids=["default", "frontier_export", "caseops_phased_ttt"])
def test_each_configuration_runs_from_its_own_bundle(tmp_path, switches):
    script = _bundle_file(tmp_path, [*TINY_RUN, *switches], mode="compressed")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "run_seed1337" / "result.json").read_text())
    assert result["status"] == "ok" and result["artifact_bytes_code"] == script.stat().st_size


def test_a_bundled_run_refuses_a_folder_holding_a_finished_run(tmp_path):
    from crownq.submit.runtime import _finished_run

    result = tmp_path / "result.json"
    assert _finished_run(result) == ""  # a new folder
    result.write_text(json.dumps({"status": "failed"}))
    assert _finished_run(result) == ""  # a failed attempt is replaced
    result.write_text(json.dumps({"status": "ok", "val_bpb": 1.2}))
    assert "holds a finished run; set RUN_DIR to a new folder" in _finished_run(result)
