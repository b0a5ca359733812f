"""`crownq-data fineweb --variant sp4096|sp8192|caseops_sp8192` against a fake hub (a local folder laid
out like the dataset repos): repo choice, download plan, per-shard and sidecar verification, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from crownq.data import cli, fineweb
from crownq.data.fineweb import VARIANTS, DownloadError, plan_downloads
from crownq.data.shards import ShardError, write_shard
from crownq.data.sidecar import write_sidecar

SHARD = 1000  # the fake manifest's shard size


def _manifest(variant: str, vocab: int, val_tokens: int, train_tokens: int, train_files: int) -> dict:
    suffix = VARIANTS[variant].suffix
    # As published: fineweb_4096_bpe.model ... fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model
    tokenizer = f"fineweb_{vocab}_bpe" + suffix.removeprefix(f"sp{vocab}")
    return {
        "shard_size": SHARD,
        "tokenizers": [{"name": f"tok_{vocab}", "model_path": f"tokenizers/{tokenizer}.model"}],
        "datasets": [{
            "name": f"fineweb10B_{suffix}",
            "tokenizer_name": f"tok_{vocab}",
            "path": f"datasets/fineweb10B_{suffix}",
            "vocab_size": vocab,
            "stats": {"files_val": 1, "files_train": train_files, "tokens_val": val_tokens,
                      "tokens_train": train_tokens},
        }],
    }


def _fake_repo(root: Path, variant: str, vocab: int = 8192, sidecar_entries: int | None = None) -> Path:
    """A repo folder holding `datasets/manifest.json`, the tokenizer, 1 val shard (+ sidecar), 3 train
    shards (the last one short)."""
    manifest = _manifest(variant, vocab, 700, 2 * SHARD + 300, 3)
    base = root / "datasets"
    (base / "tokenizers").mkdir(parents=True)
    (base / manifest["tokenizers"][0]["model_path"]).write_bytes(b"not a real sentencepiece model")
    folder = base / manifest["datasets"][0]["path"]
    rng = np.random.default_rng(0)
    write_shard(folder / "fineweb_val_000000.bin", rng.integers(0, vocab, 700))
    write_sidecar(folder / "fineweb_val_bytes_000000.bin", rng.integers(0, 9, sidecar_entries or 700))
    for index, count in enumerate([SHARD, SHARD, 300]):
        write_shard(folder / f"fineweb_train_{index:06d}.bin", rng.integers(0, vocab, count))
    (base / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def fake_hub(monkeypatch):
    """Route downloads to local repo folders: {repo_id: folder}; records which repo each call used."""
    repos: dict[str, Path] = {}
    calls: list[tuple[str, str]] = []

    def fetch(repo_id, remote_path, out_dir, endpoint, timeout):
        calls.append((repo_id, remote_path))
        source = repos[repo_id] / fineweb.REMOTE_PREFIX / remote_path
        if not source.is_file():
            raise DownloadError(f"{remote_path} not in {repo_id}")
        target = out_dir / ".download" / remote_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return target

    monkeypatch.setattr(fineweb, "check_reachable", lambda endpoint, repo_id, timeout: None)
    monkeypatch.setattr(fineweb, "_fetch", fetch)
    return repos, calls


def test_variants_name_their_repos():
    assert VARIANTS["sp1024"].repo == "willdepueoai/parameter-golf"
    assert VARIANTS["sp4096"].repo == VARIANTS["sp8192"].repo == "kevclark/parameter-golf"
    caseops = VARIANTS["caseops_sp8192"]
    assert (caseops.repo, caseops.suffix, caseops.sidecar) == (
        "romeerp/parameter-golf-caseops-v1", "sp8192_lossless_caps_caseops_v1_reserved", True)


def test_caseops_plan_has_one_sidecar_per_val_shard():
    manifest = _manifest("caseops_sp8192", 8192, 700, 2 * SHARD + 300, 3)
    plan, vocab = plan_downloads(manifest, "caseops_sp8192", 2)
    assert vocab == 8192
    assert [(p.local_name, p.expected_tokens, p.sidecar) for p in plan[1:]] == [
        ("fineweb_val_000000.bin", 700, False),
        ("fineweb_val_bytes_000000.bin", 700, True),
        ("fineweb_train_000000.bin", SHARD, False),
        ("fineweb_train_000001.bin", SHARD, False),
    ]
    assert plan[0].local_name == "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"
    plain, _ = plan_downloads(_manifest("sp4096", 4096, 700, 2 * SHARD + 300, 3), "sp4096", 3)
    assert not any(p.sidecar for p in plain) and plain[-1].expected_tokens == 300


@pytest.mark.parametrize(("variant", "vocab"), [("sp4096", 4096), ("sp8192", 8192), ("caseops_sp8192", 8192)])
def test_download_each_variant(fake_hub, tmp_path, variant, vocab):
    repos, calls = fake_hub
    repos[VARIANTS[variant].repo] = _fake_repo(tmp_path / "repo", variant, vocab)
    out = fineweb.download_fineweb(variant, 2, tmp_path / "out")
    names = sorted(p.name for p in out.iterdir())
    expected = ["fineweb_train_000000.bin", "fineweb_train_000001.bin", "fineweb_val_000000.bin"]
    if VARIANTS[variant].sidecar:
        expected.append("fineweb_val_bytes_000000.bin")
    tokenizer = f"fineweb_{vocab}_bpe" + VARIANTS[variant].suffix.removeprefix(f"sp{vocab}") + ".model"
    assert names == sorted([*expected, "manifest.json", tokenizer])
    assert {repo for repo, _ in calls} == {VARIANTS[variant].repo}
    # A second run keeps every verified file: only the manifest and tokenizer are fetched again.
    calls.clear()
    fineweb.download_fineweb(variant, 2, tmp_path / "out")
    assert [Path(p).name for _, p in calls] == ["manifest.json", tokenizer]


def test_sidecar_with_wrong_count_is_refused(fake_hub, tmp_path):
    repos, _ = fake_hub
    repo = _fake_repo(tmp_path / "repo", "caseops_sp8192", sidecar_entries=699)
    repos[VARIANTS["caseops_sp8192"].repo] = repo
    with pytest.raises(ShardError, match=r"fineweb_val_bytes_000000\.bin: token count 699 .* expected 700"):
        fineweb.download_fineweb("caseops_sp8192", 1, tmp_path / "out")
    assert not (tmp_path / "out" / "fineweb_val_bytes_000000.bin").exists()  # never takes the final name


def test_cli_uses_the_variants_repo(fake_hub, tmp_path, capsys):
    repos, calls = fake_hub
    repos["kevclark/parameter-golf"] = _fake_repo(tmp_path / "repo", "sp4096", 4096)
    args = ["fineweb", "--variant", "sp4096", "--train-shards", "1", "--out", str(tmp_path / "o")]
    assert cli.main(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "o")
    assert {repo for repo, _ in calls} == {"kevclark/parameter-golf"}
