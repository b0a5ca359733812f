"""FineWeb download: fails fast with a clear message offline; plan and verification from the manifest."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest
from datalayer_helpers import SHARED_MANIFEST

from crownq.data import cli
from crownq.data.fineweb import DownloadError, download_fineweb, plan_downloads, verify_shard
from crownq.data.shards import ShardError, write_shard


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block exits: nothing listens there


def test_unreachable_hub_fails_fast(tmp_path):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    started = time.perf_counter()
    with pytest.raises(DownloadError, match=rf"cannot reach the Hugging Face hub at {endpoint} .*refused"):
        download_fineweb("sp1024", 1, tmp_path / "fw", endpoint=endpoint, timeout=2)
    assert time.perf_counter() - started < 5  # huggingface_hub's own retries would take ~30 s
    assert not (tmp_path / "fw").exists()


def test_cli_reports_unreachable_hub(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert cli.main(["fineweb", "--variant", "sp1024", "--train-shards", "1", "--out", str(tmp_path)]) == 1
    assert "cannot reach the Hugging Face hub" in capsys.readouterr().err


def _manifest() -> dict:
    if not SHARED_MANIFEST.exists():
        pytest.skip("../shared/data/fineweb_manifest.json is absent")
    return json.loads(SHARED_MANIFEST.read_text())


@pytest.mark.shared_data
def test_plan_from_published_manifest():
    plan, vocab_size = plan_downloads(_manifest(), "sp1024", 3)
    assert vocab_size == 1024
    assert [p.local_name for p in plan] == [
        "fineweb_1024_bpe.model",
        "fineweb_val_000000.bin",
        "fineweb_train_000000.bin",
        "fineweb_train_000001.bin",
        "fineweb_train_000002.bin",
    ]
    assert plan[0].remote_path == "tokenizers/fineweb_1024_bpe.model" and plan[0].expected_tokens is None
    assert plan[1].remote_path == "datasets/fineweb10B_sp1024/fineweb_val_000000.bin"
    assert plan[1].expected_tokens == 62_021_846
    assert {p.expected_tokens for p in plan[2:]} == {100_000_000}
    last, _ = plan_downloads(_manifest(), "sp1024", 195)
    assert last[-1].expected_tokens == 19_473_201_340 - 194 * 100_000_000
    with pytest.raises(DownloadError, match=r"--train-shards must lie in \[1, 195\], got 196"):
        plan_downloads(_manifest(), "sp1024", 196)
    with pytest.raises(DownloadError, match="no dataset for variant 'sp4096'"):
        plan_downloads(_manifest(), "sp4096", 1)


def test_verify_shard(tmp_path):
    path = write_shard(tmp_path / "fineweb_val_000000.bin", np.arange(100))
    verify_shard(path, 100, 1024)
    with pytest.raises(ShardError, match="token count 100 does not match the manifest: expected 120"):
        verify_shard(path, 120, 1024)
    with pytest.raises(ShardError, match="expected ids < vocab_size 50"):
        verify_shard(path, 100, 50)
