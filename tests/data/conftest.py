"""Shared fixtures: small and default-size embedded builds, made once per test session."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from datalayer_helpers import SMALL_OPTIONS

from crownq.data.embedded import EmbeddedOptions, build_embedded


@pytest.fixture(scope="session")
def small_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_embedded(SMALL_OPTIONS, out_dir=tmp_path_factory.mktemp("small") / "data", progress=False)


@pytest.fixture(scope="session")
def small_caseops_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small build with the CaseOps transform and the validation byte sidecar."""
    return build_embedded(
        replace(SMALL_OPTIONS, caseops=True),
        out_dir=tmp_path_factory.mktemp("caseops") / "data",
        progress=False,
    )


@pytest.fixture(scope="session")
def default_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real default size (>= 2 MB of text, vocab 1024), as `crownq-data embedded` makes it."""
    return build_embedded(
        EmbeddedOptions(), out_dir=tmp_path_factory.mktemp("default") / "data", progress=False
    )
