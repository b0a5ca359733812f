"""Fetch the challenge's published FineWeb shards and tokenizer from the Hugging Face hub.

The dataset repo (`willdepueoai/parameter-golf`, type dataset) keeps everything under `datasets/`:
`datasets/manifest.json` describes the tokenizers and shard sets with paths relative to that folder
(e.g. `datasets/fineweb10B_sp1024/fineweb_train_*.bin`, `tokenizers/fineweb_1024_bpe.model`) and the
token statistics used here to check each downloaded shard. Files land flat in one output folder, the
layout `conf/data/fineweb_sp1024.yaml` expects.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from crownq.data.shards import ShardError, read_shard, read_shard_header

DEFAULT_REPO = "willdepueoai/parameter-golf"
REMOTE_PREFIX = "datasets"
DEFAULT_ENDPOINT = "https://huggingface.co"

__all__ = ["DownloadError", "PlannedFile", "download_fineweb", "plan_downloads", "verify_shard"]


class DownloadError(RuntimeError):
    """The hub could not be reached or served something other than the manifest promised."""


@dataclass(frozen=True)
class PlannedFile:
    remote_path: str  # relative to the repo's `datasets/` folder, as the manifest writes it
    local_name: str
    expected_tokens: int | None  # None for the tokenizer


def _dataset_entry(manifest: dict, variant: str) -> dict:
    names = [d.get("name", "?") for d in manifest.get("datasets", [])]
    for dataset in manifest.get("datasets", []):
        if dataset.get("name", "").endswith(f"_{variant}"):
            return dataset
    raise DownloadError(
        f"manifest has no dataset for variant {variant!r}: expected a name ending _{variant}, found {names}"
    )


def _expected_counts(total_tokens: int, files: int, shard_size: int) -> list[int]:
    # Every shard but the last holds shard_size tokens; the last holds the rest.
    if files == 1:
        return [total_tokens]
    return [shard_size] * (files - 1) + [total_tokens - shard_size * (files - 1)]


def plan_downloads(manifest: dict, variant: str, train_shards: int) -> tuple[list[PlannedFile], int]:
    """The files to fetch (tokenizer, validation shards, first `train_shards` train shards) and vocab size."""
    dataset = _dataset_entry(manifest, variant)
    tokenizers = {t["name"]: t for t in manifest.get("tokenizers", [])}
    tokenizer = tokenizers.get(dataset["tokenizer_name"])
    if tokenizer is None:
        raise DownloadError(
            f"manifest: dataset {dataset['name']} names tokenizer {dataset['tokenizer_name']!r}, "
            f"expected one of {sorted(tokenizers)}"
        )
    stats = dataset["stats"]
    if not 1 <= train_shards <= stats["files_train"]:
        raise DownloadError(f"--train-shards must lie in [1, {stats['files_train']}], got {train_shards}")
    shard_size = int(manifest["shard_size"])
    folder = dataset["path"]
    plan = [PlannedFile(tokenizer["model_path"], Path(tokenizer["model_path"]).name, None)]
    for split, files_key, tokens_key, count in (
        ("val", "files_val", "tokens_val", stats["files_val"]),
        ("train", "files_train", "tokens_train", train_shards),
    ):
        expected = _expected_counts(int(stats[tokens_key]), int(stats[files_key]), shard_size)
        for index in range(count):
            name = f"fineweb_{split}_{index:06d}.bin"
            plan.append(PlannedFile(f"{folder}/{name}", name, expected[index]))
    return plan, int(dataset["vocab_size"])


def verify_shard(path: Path, expected_tokens: int, vocab_size: int) -> None:
    """Header, size, token count against the manifest, and every token id < vocab_size."""
    found = read_shard_header(path)
    if found != expected_tokens:
        raise ShardError(
            f"shard {path}: token count {found} does not match the manifest: expected {expected_tokens}"
        )
    read_shard(path, vocab_size)


def check_reachable(endpoint: str, repo_id: str, timeout: float) -> None:
    """One short request first: huggingface_hub retries a dead host with back-off for ~30 s."""
    url = f"{endpoint.rstrip('/')}/api/datasets/{repo_id}"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # the server answered (401/404/...): reachable; hf_hub_download reports the details
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(
            f"cannot reach the Hugging Face hub at {endpoint} ({reason}); check your network, proxy or "
            "HF_ENDPOINT. No internet? Use the embedded corpus instead (data=embedded, the default)."
        ) from None


def _fetch(repo_id: str, remote_path: str, out_dir: Path, endpoint: str, timeout: float) -> Path:
    from huggingface_hub import hf_hub_download

    full = Path(REMOTE_PREFIX) / remote_path
    try:
        local = hf_hub_download(
            repo_id,
            full.name,
            subfolder=full.parent.as_posix(),
            repo_type="dataset",
            local_dir=out_dir / ".download",
            endpoint=endpoint,
            etag_timeout=timeout,
        )
    except Exception as error:  # the hub library raises many types; name the file in one message
        raise DownloadError(f"downloading {full} from {repo_id} at {endpoint} failed: {error}") from error
    return Path(local)


def download_fineweb(
    variant: str = "sp1024",
    train_shards: int = 80,
    out_dir: str | os.PathLike | None = None,
    repo_id: str = DEFAULT_REPO,
    endpoint: str | None = None,
    timeout: float = 10.0,
) -> Path:
    """Download (or complete) a FineWeb variant into `out_dir`; files already there and valid are kept."""
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    out = Path(out_dir or f"data/fineweb10B_{variant}").expanduser()
    check_reachable(endpoint, repo_id, timeout)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = _fetch(repo_id, "manifest.json", out, endpoint, timeout)
    manifest = json.loads(manifest_path.read_text())
    plan, vocab_size = plan_downloads(manifest, variant, train_shards)
    from tqdm import tqdm

    for item in tqdm(plan, desc=f"fineweb {variant}", unit="file"):
        target = out / item.local_name
        if item.expected_tokens is not None and target.exists():
            try:
                verify_shard(target, item.expected_tokens, vocab_size)
                continue
            except ShardError:
                pass  # re-download a partial or damaged file
        downloaded = _fetch(repo_id, item.remote_path, out, endpoint, timeout)
        if item.expected_tokens is not None:
            verify_shard(downloaded, item.expected_tokens, vocab_size)
        os.replace(downloaded, target)  # only verified files take the final name
    shutil.copyfile(manifest_path, out / "manifest.json")
    shutil.rmtree(out / ".download", ignore_errors=True)
    return out
