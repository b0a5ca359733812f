"""Stripping keeps the program; code bytes are the bundle's size for the run's configuration."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pipeline_compose import compose_run_config

from crownq.quant.budget import code_size
from crownq.results import digest_payload
from crownq.submit.bundle import PACKAGE_PARENT, BundleError, build_bundle
from crownq.submit.strip import StripError, _check_same_program, strip_source

TRICKY = '''"""Module doc."""
import os  # imports os


def only_doc():
    """Nothing else here."""


def f(x):
    """Doc
    on two lines."""
    s = """keep\x20\x20
    # not a comment
    """  # but this is
    t = f"""{x}   # inside an f-string
"""
    return s + t + "#" + os.sep   # trailing


class C:
    """Doc."""
    y: int = 1  # field
'''


def test_strip_removes_comments_and_docstrings_but_not_string_contents():
    out = strip_source(TRICKY)
    assert "imports os" not in out and "Doc" not in out and "# field" not in out and "# trailing" not in out
    assert 'keep  \n' in out and "# not a comment" in out and "# inside an f-string" in out
    namespace: dict = {}
    exec(compile(out, "tricky", "exec"), namespace)
    exec(compile(TRICKY, "tricky0", "exec"), original := {})
    assert namespace["f"](3) == original["f"](3) and namespace["only_doc"]() is None


def test_strip_check_rejects_a_different_program():
    import ast

    with pytest.raises(StripError, match="not the same program"):
        _check_same_program(ast.parse("x = 1\n"), "x = 2\n", "m.py")


def test_every_package_module_strips_to_the_same_program():
    for path in sorted((PACKAGE_PARENT / "crownq").rglob("*.py")):
        strip_source(path.read_text(encoding="utf-8"), str(path))  # raises StripError otherwise


def test_code_bytes_are_the_bundle_size_of_the_run_config():
    cfg = compose_run_config(["logger=none", "quantizer.code_bytes_mode=raw"])
    raw = code_size(cfg)
    bundle = build_bundle(digest_payload(cfg), "raw")
    assert raw.bytes == bundle.size == len(bundle.file) and raw.sha256 == bundle.sha256
    # The frozen configuration is part of the file, so another configuration counts other bytes.
    other = code_size(compose_run_config(["logger=none", "quantizer.code_bytes_mode=raw", "arch=mid"]))
    assert other.sha256 != raw.sha256
    cfg.quantizer.code_bytes_mode = "compressed"
    packed = code_size(cfg)
    assert packed.bytes < raw.bytes / 3
    # The report shows the uncompressed program beside the count: raw counts the program itself.
    assert raw.program_bytes == raw.bytes
    assert packed.program_bytes == len(build_bundle(digest_payload(cfg), "compressed").program) > packed.bytes
    assert build_bundle(digest_payload(cfg), "compressed").file.startswith(b"import ")
    t0 = time.perf_counter()
    assert code_size(cfg) == packed  # cached: the pipeline pays for it once per configuration
    assert time.perf_counter() - t0 < 0.5


def test_a_bad_mode_is_refused_by_name():
    with pytest.raises(BundleError, match="quantizer.code_bytes_mode='zip'"):
        build_bundle({}, "zip")


def test_bundle_source_lives_in_the_repository_checkout():
    assert (Path(PACKAGE_PARENT) / "crownq" / "pipeline.py").is_file()
