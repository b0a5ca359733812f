"""reexport_from: the saved weights of a finished run exported again with other export-only quantizer
options give exactly what a full run with those options gives, and anything that changes training is
refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pipeline_compose import compose_run_config
from test_pipeline_e2e import SMALL, launch

from crownq.results import EXPORT_ONLY_QUANTIZER_FIELDS, read_result, training_digest, weights_digest

PACKAGE = Path(__file__).resolve().parents[2] / "crownq"
# Everything that runs while training: a quantizer field read here is not export-only.
TRAINING_SOURCES = [*sorted((PACKAGE / "train").glob("*.py")), *sorted((PACKAGE / "model").glob("*.py")),
                    PACKAGE / "quant" / "fake_quant.py"]


def _quantizer_reads(text: str) -> set[str]:
    """Fields read from the quantizer config in `text`, through its usual names and local aliases
    (`q = self.qcfg`)."""
    aliases = {"qcfg", "quant_cfg", "quantizer"}
    aliases |= set(re.findall(r"\b(\w+) = (?:self\.)?(?:qcfg|quant_cfg|cfg\.quantizer)\b", text))
    names = "|".join(sorted(aliases))
    fields = set(re.findall(rf"\b(?:{names})\.([a-z_0-9]+)", text))
    getter = r"getattr\((?:self\.)?(?:qcfg|quant_cfg|cfg\.quantizer), [\"']([a-z_0-9]+)[\"']"
    fields |= set(re.findall(getter, text))
    return fields


def test_no_training_module_reads_an_export_only_quantizer_field():
    read = {(path.name, f) for path in TRAINING_SOURCES for f in _quantizer_reads(path.read_text())}
    export_only = sorted((name, f) for name, f in read if f in EXPORT_ONLY_QUANTIZER_FIELDS)
    assert not export_only, f"training reads fields listed as export-only: {export_only}"
    # The fields training does read are found (the check can fail), aliases included.
    assert {"qat_coverage", "scale_floor", "crownq_window", "qat_lr_scale_below"} <= {f for _, f in read}


def test_weights_digest_ignores_export_options_but_not_training_ones():
    base = compose_run_config(["logger=none"])
    export_change = compose_run_config(["logger=none", "quantizer=frontier", "eval=sliding32"])
    assert weights_digest(export_change) == weights_digest(base)
    assert training_digest(export_change) != training_digest(base)
    for training_change in ("quantizer.qat=false", "quantizer.attn_bits=5", "quantizer.scale_floor=tiny",
                            "train.iterations=7", "arch.model_dim=64"):
        assert weights_digest(compose_run_config(["logger=none", training_change])) != weights_digest(base), \
            training_change
    # Saving weights or re-exporting changes nothing a run computes.
    assert weights_digest(compose_run_config(["logger=none", "save_weights=true"])) == weights_digest(base)


@pytest.mark.slow
def test_reexport_equals_a_full_run_and_refuses_what_changes_training(tmp_path):
    source = tmp_path / "source"
    assert launch(*SMALL, "logger=none", "save_weights=true", f"hydra.run.dir={source}",
                  cwd=tmp_path).returncode == 0
    assert (source / "trained_weights.pt").is_file()
    # The same quantizer again: the very same artifact and score, without training.
    again = tmp_path / "again"
    proc = launch(*SMALL, "logger=none", f"reexport_from={source}", f"hydra.run.dir={again}", cwd=tmp_path)
    assert proc.returncode == 0 and "[crownq] train" not in proc.stdout and "[crownq] reexport" in proc.stdout
    a, b = read_result(source / "result.json"), read_result(again / "result.json")
    assert (again / "artifact.ptz").read_bytes() == (source / "artifact.ptz").read_bytes()
    assert b["val_bpb"] == a["val_bpb"] and b["reexported_from"] == str(source)
    assert b["train_seconds"] == a["train_seconds"] and b["steps"] == a["steps"]
    # Another export option: what a full run with that option gives, byte for byte.
    full = tmp_path / "full_sdclip"
    assert launch(*SMALL, "logger=none", "quantizer.clip_select=sdclip", f"hydra.run.dir={full}",
                  cwd=tmp_path).returncode == 0
    re_sd = tmp_path / "reexport_sdclip"
    assert launch(*SMALL, "logger=none", "quantizer.clip_select=sdclip", f"reexport_from={source}",
                  f"hydra.run.dir={re_sd}", cwd=tmp_path).returncode == 0
    assert (re_sd / "artifact.ptz").read_bytes() == (full / "artifact.ptz").read_bytes()
    assert read_result(re_sd / "result.json")["val_bpb"] == read_result(full / "result.json")["val_bpb"]
    # A training-time option (QAT off) cannot reuse these weights: refused by name, source untouched.
    bad = tmp_path / "bad"
    proc = launch(*SMALL, "logger=none", "quantizer.qat=false", f"reexport_from={source}",
                  f"hydra.run.dir={bad}", cwd=tmp_path)
    assert proc.returncode != 0
    failed = read_result(bad / "result.json")
    assert failed["status"] == "failed" and "trained with another config (weights digest" in failed["error"]
    # A source run that did not keep its weights: the error says how to get them.
    plain = tmp_path / "plain"
    assert launch(*SMALL, "logger=none", "seed=5", f"hydra.run.dir={plain}", cwd=tmp_path).returncode == 0
    proc = launch(*SMALL, "logger=none", "seed=5", f"reexport_from={plain}",
                  f"hydra.run.dir={tmp_path / 'x'}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "save_weights=true" in read_result(tmp_path / "x" / "result.json")["error"]
    assert read_result(source / "result.json")["status"] == "ok"
