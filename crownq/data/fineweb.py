"""Fetch the challenge's published FineWeb shards and tokenizer from the Hugging Face hub.

The dataset repo (`willdepueoai/parameter-golf`, type dataset) keeps everything under `datasets/`:
`datasets/manifest.json` describes the tokenizers and shard sets with paths relative to that folder
(e.g. `datasets/fineweb10B_sp1024/fineweb_train_*.bin`, `tokenizers/fineweb_1024_bpe.model`) and the
token statistics used here to check each downloaded shard. Files land flat in one output folder, the
layout `conf/data/fineweb_sp1024.yaml` expects.

The other variants (sp4096, sp8192, CaseOps sp8192) live in other repos with the same layout;
`VARIANTS` names each one's repo and the dataset-name suffix its manifest uses. The CaseOps dataset
also ships a byte sidecar per validation shard (`fineweb_val_bytes_000000.bin`, sidecar.py), fetched
and checked (one entry per token of its shard) like the shards.
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
from crownq.data.sidecar import sidecar_name

DEFAULT_REPO = "willdepueoai/parameter-golf"
REMOTE_PREFIX = "datasets"
DEFAULT_ENDPOINT = "https://huggingface.co"

__all__ = ["VARIANTS", "DownloadError", "PlannedFile", "Variant", "download_fineweb", "plan_downloads",
           "verify_shard"]


@dataclass(frozen=True)
class Variant:
    repo: str  # Hugging Face dataset repo
    suffix: str  # the manifest's dataset name ends with _<suffix>
    folder: str  # default local folder under data/
    sidecar: bool = False  # validation byte sidecars to fetch (CaseOps)


VARIANTS = {
    "sp1024": Variant(DEFAULT_REPO, "sp1024", "fineweb10B_sp1024"),
    "sp4096": Variant("kevclark/parameter-golf", "sp4096", "fineweb10B_sp4096"),
    "sp8192": Variant("kevclark/parameter-golf", "sp8192", "fineweb10B_sp8192"),
    "caseops_sp8192": Variant(
        "romeerp/parameter-golf-caseops-v1",
        "sp8192_lossless_caps_caseops_v1_reserved",
        "fineweb10B_sp8192_lossless_caps_caseops_v1_reserved",
        sidecar=True,
    ),
}


class DownloadError(RuntimeError):
    """The hub could not be reached or served something other than the manifest promised."""


@dataclass(frozen=True)
class PlannedFile:
    remote_path: str  # relative to the repo's `datasets/` folder, as the manifest writes it
    local_name: str
    expected_tokens: int | None  # None for the tokenizer
    sidecar: bool = False  # a byte sidecar: counted like a shard, but its values are bytes, not ids


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
    """The files to fetch (tokenizer, validation shards and their byte sidecars for CaseOps, first
    `train_shards` train shards) and the vocab size."""
    known = VARIANTS.get(variant)
    dataset = _dataset_entry(manifest, known.suffix if known else variant)
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
            if split == "val" and known is not None and known.sidecar:
                plan.append(PlannedFile(f"{folder}/{sidecar_name(name)}", sidecar_name(name), expected[index],
                                        sidecar=True))
    return plan, int(dataset["vocab_size"])


def verify_shard(path: Path, expected_tokens: int, vocab_size: int | None) -> None:
    """Header, size, token count against the manifest, and every token id < vocab_size (None: a byte
    sidecar, whose values are byte counts)."""
    found = read_shard_header(path)
    if found != expected_tokens:
        raise ShardError(
            f"shard {path}: token count {found} does not match the manifest: expected {expected_tokens}"
        )
    if vocab_size is not None:
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
    repo_id: str | None = None,
    endpoint: str | None = None,
    timeout: float = 10.0,
) -> Path:
    """Download (or complete) a FineWeb variant into `out_dir`; files already there and valid are kept.

    `repo_id` defaults to the variant's repo (VARIANTS); a variant not listed there is looked up by
    name in `repo_id` (default the challenge's repo), as before the list existed."""
    known = VARIANTS.get(variant)
    repo_id = repo_id or (known.repo if known else DEFAULT_REPO)
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    out = Path(out_dir or f"data/{known.folder if known else 'fineweb10B_' + variant}").expanduser()
    check_reachable(endpoint, repo_id, timeout)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = _fetch(repo_id, "manifest.json", out, endpoint, timeout)
    manifest = json.loads(manifest_path.read_text())
    plan, vocab_size = plan_downloads(manifest, variant, train_shards)
    from tqdm import tqdm

    for item in tqdm(plan, desc=f"fineweb {variant}", unit="file"):
        target = out / item.local_name
        ids_below = None if item.sidecar else vocab_size
        if item.expected_tokens is not None and target.exists():
            try:
                verify_shard(target, item.expected_tokens, ids_below)
                continue
            except ShardError:
                pass  # re-download a partial or damaged file
        downloaded = _fetch(repo_id, item.remote_path, out, endpoint, timeout)
        if item.expected_tokens is not None:
            verify_shard(downloaded, item.expected_tokens, ids_below)
        os.replace(downloaded, target)  # only verified files take the final name
    shutil.copyfile(manifest_path, out / "manifest.json")
    shutil.rmtree(out / ".download", ignore_errors=True)
    return out
