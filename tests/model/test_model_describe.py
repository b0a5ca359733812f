"""crownq-describe composes the config as launch.py does and prints `model_params: N`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crownq.describe import main

REPO = Path(__file__).resolve().parents[2]


def _params_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_record_arch_has_exactly_the_records_parameter_count(capsys):
    assert main(["arch=crownq_11l"]) == 0
    out = capsys.readouterr().out
    assert _params_line(out) == "model_params: 27124848"
    assert "blocks.10.attn" in out and "value_embed" in out and "bigram" in out


def test_naive_baseline_count(capsys):
    # 9 x (2*512^2 + 2*512*256 + 2*512*1024) matrices + 1024*512 embedding + 9*2056 block controls
    # + 4*512 skip weights: the challenge baseline's published 17,059,912.
    main(["arch=baseline_9l"])
    assert _params_line(capsys.readouterr().out) == "model_params: 17059912"


def test_overrides_reach_the_model_and_bad_ones_name_the_field(capsys):
    main(["arch=crownq_11l", "arch.bigram_vocab=0"])
    assert _params_line(capsys.readouterr().out) == f"model_params: {27124848 - (3072 * 128 + 128 * 512 + 1)}"
    with pytest.raises(ValueError, match="arch.num_kv_heads"):
        main(["arch.num_kv_heads=3"])


def test_console_entry_point_runs_as_a_subprocess():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "crownq.describe", "arch=tiny"], cwd="/", env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = _params_line(proc.stdout)
    assert line.startswith("model_params: ") and int(line.split()[1]) > 0
