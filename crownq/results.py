"""result.json: the source of truth of a run. Written atomically, read back with clear errors.

The config digest identifies "the same experiment" across seeds: it hashes the resolved config
without the keys that do not change what is trained and scored (seed, logging, launcher, labels,
debug hooks, machine-local paths), so the report can group seeds of one configuration.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import platform
import tempfile
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

RESULT_FILENAME = "result.json"
ARTIFACT_FILENAME = "artifact.ptz"  # kept in the run folder beside result.json

# Top-level keys that never change what a run computes.
DIGEST_EXCLUDED_KEYS = ("seed", "logger", "hydra", "launcher", "sweep", "ablation", "debug", "rescore_from",
                      "reuse", "reexport_from", "save_weights")
# Quantizer fields that only the export reads (never training: QAT reads qat*, crownq*, soft_round*,
# attn_bits, mlp_bits and scale_floor). Runs that differ only in these and `eval` train the same weights
# (weights_digest), so `reexport_from` can export a saved model again instead of training it again.
# A field missing here counts as training-time: the safe side. tests/pipeline/test_reexport.py checks
# that no training module reads one of these.
EXPORT_ONLY_QUANTIZER_FIELDS = (
    "name", "method", "embed_bits", "other_bits", "passthrough_max_numel", "block_size", "gptq_precision",
    "damp", "act_order", "clip_quantiles", "clip_select", "int8_clip", "int8_clip_quantile", "control_store",
    "prune_cost", "calibration_batches", "calibration_source", "calibration_temperature",
    "calibration_seqs_per_batch", "prune", "budget_bytes", "headroom_bytes", "code_bytes_mode",
    "sdclip_k_attn", "sdclip_k_mlp", "sdclip_k_embed", "sdclip_k_other", "sdclip_lambda", "embed_method",
    "gate_int8", "lqer_rank", "lqer_top_k", "lqer_group", "compressor", "codec", "lzma_preset",
    "compress_threads", "device",
)
# Nested keys that are machine-local paths (same data, different folder = same experiment).
DIGEST_EXCLUDED_PATHS = (("data", "root"),)

# Keys every finished (status ok) result carries; the report relies on them.
REQUIRED_OK_KEYS = (
    "status", "seed", "config_digest", "model_params", "steps", "train_seconds", "prequant_val_bpb",
    "roundtrip_val_bpb", "sliding_val_bpb", "val_bpb", "val_loss", "artifact_bytes_model",
    "artifact_bytes_code", "artifact_bytes_total", "eval_seconds", "hardware", "torch_version",
)
# diverged: training hit a non-finite loss and stopped there (crownq/train/loop.py).
STATUSES = ("running", "ok", "failed", "interrupted", "diverged")


class ResultError(ValueError):
    """A result file that is missing, unreadable or lacks what the report needs."""


def digest_payload(cfg: DictConfig, also_excluded: tuple[str, ...] = ()) -> dict[str, Any]:
    """The resolved config with the excluded keys removed (what the digest hashes)."""
    payload: dict[str, Any] = {}
    for key in cfg.keys():
        if key in DIGEST_EXCLUDED_KEYS or key in also_excluded:
            continue
        # Resolving node by node keeps interpolations into excluded nodes (e.g. hydra runtime) out.
        node = cfg[key]
        payload[key] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    for path in DIGEST_EXCLUDED_PATHS:
        parent = payload
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
    return payload


def _payload_digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def config_digest(cfg: DictConfig, also_excluded: tuple[str, ...] = ()) -> str:
    """sha256 (hex) of the canonical JSON of `digest_payload(cfg)`."""
    return _payload_digest(digest_payload(cfg, also_excluded))


def training_digest(cfg: DictConfig) -> str:
    """The config digest without the `eval` group: runs that share it produce the same artifact."""
    return config_digest(cfg, also_excluded=("eval",))


def weights_digest(cfg: DictConfig) -> str:
    """The config digest without `eval` and the export-only quantizer fields: runs that share it train
    the same weights (the export may differ)."""
    payload = digest_payload(cfg, also_excluded=("eval",))
    quantizer = dict(payload.get("quantizer") or {})
    for name in EXPORT_ONLY_QUANTIZER_FIELDS:
        quantizer.pop(name, None)
    payload["quantizer"] = quantizer
    return _payload_digest(payload)


def holds_finished_run(result_path: str | os.PathLike) -> bool:
    """Whether `result_path` (a result.json) says `ok`: a finished run that nothing may overwrite. A
    missing or unreadable file is no finished run."""
    try:
        status = json.loads(Path(result_path).read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        return False
    return status == "ok"


def json_safe(value: Any) -> Any:
    """NaN and inf (e.g. the std of one seed) are not JSON: null instead, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON to a temp file beside `path`, fsync, then rename: readers never see half a file."""
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=True, default=str) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, blob: bytes) -> Path:
    """Write bytes to a temp file beside `path`, fsync, then rename (a crash leaves the old file whole)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; results and artifacts live in shared folders, so use the umask instead.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # no /proc: set and restore at once
    os.umask(old)
    return old


def read_result(path: str | os.PathLike) -> dict[str, Any]:
    """Load one result.json; errors name the file and what is wrong with it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultError(f"{path}: cannot read result file ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ResultError(f"{path}: not valid JSON at {where}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ResultError(f"{path}: expected a JSON object, got {type(data).__name__}")
    status = data.get("status")
    if status not in STATUSES:
        raise ResultError(f"{path}: field 'status' is {status!r}, expected one of {', '.join(STATUSES)}")
    if "seed" not in data:
        raise ResultError(f"{path}: field 'seed' is missing")
    if status == "ok":
        missing = [key for key in REQUIRED_OK_KEYS if key not in data]
        if missing:
            raise ResultError(f"{path}: status is 'ok' but these fields are missing: {', '.join(missing)}")
    return data


def failure_fields(exc: BaseException, status: str = "failed") -> dict[str, Any]:
    """What a failed run adds to its result: the error in one line and the full traceback."""
    return {
        "status": status,
        "error": error_line(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def error_line(exc: BaseException) -> str:
    """One line naming the cause; a full disk says which file and what to do instead of an errno."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" while writing {exc.filename}" if exc.filename else ""
        return (f"no space left on device{where}: free space there and rerun the same command (a run "
                "resumes from its last checkpoint)")
    return f"{type(exc).__name__}: {exc}"


def hardware_description(world_size: int = 1) -> str:
    """E.g. '8xNVIDIA H100 80GB HBM3' or 'cpu: 2 cores (x86_64)', as records print it."""
    import torch

    if torch.cuda.is_available():
        return f"{world_size}x{torch.cuda.get_device_name(0)}"
    cores = os.cpu_count() or 1
    return f"{world_size}xcpu ({cores} cores, {platform.machine()})"
