"""The recipe, top to bottom, for one seed on every rank: data -> model -> train (+ averaging) ->
calibrate, quantise, prune -> artifact file -> load back from the artifact -> evaluate. It returns the
result keys it measured; what surrounds it (the run folder's lock and result.json, wandb, reuse,
rescore) is crownq.pipeline's job, and a bundled train_gpt.py runs it through crownq.submit.runtime.

Only rank 0 writes the artifact; every rank scores the artifact read back from the file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from crownq.distributed import DistEnv, barrier
from crownq.log import logger
from crownq.results import ARTIFACT_FILENAME, RESULT_FILENAME, json_safe, write_bytes_atomic

# `artifact_source(cfg, stage, paths, dist_env, run_dir)` -> (artifact path, result keys): replaces
# training (and export) with an earlier run's artifact or weights (crownq.pipeline's rescore_from and
# reexport_from); None trains and exports.
ArtifactSource = Callable[..., "tuple[Path, dict[str, Any]]"]
# save_weights=true: the trained (averaged) weights, for reexport_from runs.
WEIGHTS_FILENAME = "trained_weights.pt"


def run_recipe(cfg: DictConfig, dist_env: DistEnv, run_dir: Path, log,
               artifact_source: ArtifactSource | None = None) -> dict[str, Any]:
    """Train (or take `artifact_source`'s artifact), export and score one seed: the result keys."""
    from crownq.data.loader import load_validation_tokens
    from crownq.data.resolve import prepare_data
    from crownq.data.sidecar import load_byte_tables
    from crownq.eval import headline as eval_headline
    from crownq.eval import run_evaluation, total_seconds
    from crownq.model import build_model
    from crownq.quant.export import load_artifact

    _inject_debug_failure(cfg)
    stage = StageClock(dist_env.is_main)

    paths = prepare_data(cfg.data)
    val_tokens = load_validation_tokens(paths.val_files, cfg.eval.seq_len, paths.vocab_size)
    # The byte sidecar's counts when the data has one (CaseOps), else the tokenizer's token rule.
    tables = load_byte_tables(paths.tokenizer_path, paths.vocab_size, paths.val_files, paths.val_byte_files,
                              val_tokens.numel())
    stage.done("data", f"{len(paths.train_files)} train shards, {val_tokens.numel():,} validation tokens")

    if artifact_source is not None:
        artifact_path, produced = artifact_source(cfg, stage, paths, dist_env, run_dir)
    else:
        artifact_path, produced = _train_and_export(cfg, dist_env, run_dir, paths, val_tokens, tables,
                                                    stage, log)

    # Score what a submission would ship: a fresh model holding only the artifact's weights.
    eval_model = build_model(cfg.arch).place(dist_env.device)
    expected = {name: tuple(t.shape) for name, t in eval_model.state_dict().items()}
    eval_model.load_state_dict(load_artifact(artifact_path, expected_shapes=expected))
    scores = run_evaluation(eval_model, val_tokens, tables, cfg.eval, dist_env)
    best = eval_headline(scores)
    log({f"eval/{name}_{key}": getattr(r, key) for name, r in scores.items()
         for key in ("val_bpb", "val_loss")})
    stage.done("eval", ", ".join(f"{k} {v.val_bpb:.4f} bpb in {v.seconds:.1f} s" for k, v in scores.items()))

    return {
        **produced,
        "roundtrip_val_loss": scores["roundtrip"].val_loss if "roundtrip" in scores else None,
        "roundtrip_val_bpb": scores["roundtrip"].val_bpb if "roundtrip" in scores else None,
        "sliding_val_loss": scores["sliding"].val_loss if "sliding" in scores else None,
        "sliding_val_bpb": scores["sliding"].val_bpb if "sliding" in scores else None,
        "ttt_val_bpb": scores["ttt"].val_bpb if "ttt" in scores else None,
        "val_bpb": best.val_bpb,
        "val_loss": best.val_loss,
        "val_method": best.method or next(k for k, v in scores.items() if v is best),
        "eval_seconds": total_seconds(scores),
        "eval_method_seconds": {k: v.seconds for k, v in scores.items()},
        # What each method did (windows, TTT chunks and phases run, ...): JSON-safe, for reports and audits.
        "eval_details": json_safe({k: v.details for k, v in scores.items()}),
        "eval_tokens": best.tokens,
        "eval_bytes": best.bytes,
        "ttt_score_first": True,  # crownq's only TTT scores each chunk before training on it
        "stage_seconds": stage.seconds,
    }


def _train_and_export(cfg: DictConfig, dist_env: DistEnv, run_dir: Path, paths, val_tokens, tables,
                      stage: StageClock, log) -> tuple[Path, dict[str, Any]]:
    """Train (+ average), calibrate, quantise, prune and write the artifact; the result keys they give."""
    from crownq.model import build_model
    from crownq.train import train_model

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch).place(dist_env.device)
    model_params = sum(p.numel() for p in model.parameters())
    stage.done("model", f"{model_params:,} parameters")

    # Checkpoints live in the run folder, so a requeued job resumes from its own.
    ckpt_dir = run_dir / "checkpoints"
    # Training-time validation charges the same bytes as the scores below (the sidecar, when there is one).
    trained = train_model(model, cfg, dist_env, paths.train_files, val_tokens, tables, ckpt_dir, log)
    stage.done("train", f"{trained.steps} steps in {trained.train_seconds:.1f} s, "
                        f"pre-quant val_bpb {trained.prequant_val_bpb:.4f}")
    produced: dict[str, Any] = {
        "model_params": model_params,
        "steps": trained.steps,
        "train_seconds": trained.train_seconds,
        "step_avg_ms": 1000.0 * trained.train_seconds / max(1, trained.steps),
        "prequant_val_loss": trained.prequant_val_loss,
        "prequant_val_bpb": trained.prequant_val_bpb,
    }
    if dist_env.is_main and cfg.get("save_weights"):
        save_weights(run_dir / WEIGHTS_FILENAME, trained.state_dict)
    artifact_path, exported = export_trained(cfg, dist_env, run_dir, model, trained.state_dict, paths, stage)
    return artifact_path, {**produced, **exported}


def save_weights(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """The trained weights as a plain tensor dict (torch.load(weights_only=True) reads it), atomically."""
    import io

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def export_trained(cfg: DictConfig, dist_env: DistEnv, run_dir: Path, model: torch.nn.Module,
                   state_dict: dict[str, torch.Tensor], paths, stage: StageClock
                   ) -> tuple[Path, dict[str, Any]]:
    """Calibrate, quantise, prune and write the artifact of trained weights `state_dict`."""
    from crownq.quant.budget import code_size
    from crownq.quant.export import export_model

    produced: dict[str, Any] = {}
    # Export is rank 0's job; the others wait and then read the same artifact file back.
    artifact_path = run_dir / ARTIFACT_FILENAME
    if dist_env.is_main:
        model.load_state_dict(state_dict)
        hessians = _collect_hessians(model, cfg, paths.train_files, paths.tokenizer_path, dist_env)
        stage.done("calibrate", f"{len(hessians or {})} Hessians")
        # Code bytes = this configuration's submission file (crownq-submit's train_gpt.py), measured.
        code = code_size(cfg)
        exported = export_model(state_dict, model.export_groups(), hessians, cfg.quantizer, code.bytes)
        write_bytes_atomic(artifact_path, exported.blob)
        stage.done("export", f"{exported.total_bytes:,} bytes ({exported.pruned:,} values pruned)")
        produced.update({
            # Calibration on training batches counts inside the training budget; self-generated does not.
            "calibration_seconds": stage.seconds.get("calibrate"),
            "calibration_source": (cfg.quantizer.calibration_source if cfg.quantizer.method == "gptq"
                                   else None),
            "artifact_bytes_model": exported.model_bytes,
            "artifact_bytes_code": exported.code_bytes,
            "artifact_code_sha256": code.sha256,  # crownq-submit checks its bundle against it
            "code_bytes_mode": code.mode,
            # What the counted file runs before compression: the report shows it beside the count.
            "artifact_bytes_code_program": code.program_bytes,
            "artifact_bytes_total": exported.total_bytes,
            "pruned": exported.pruned,
            "export_seconds": exported.seconds,
            "artifact_path": str(artifact_path),
        })
    barrier()
    return artifact_path, produced


def _collect_hessians(model: torch.nn.Module, cfg: DictConfig, train_files: list[Path], tokenizer_path: Path,
                      dist_env: DistEnv) -> dict[str, torch.Tensor] | None:
    """GPTQ Hessians from `quantizer.calibration_source`:

    - "train": training micro-batches (the record's choice; the rules then count calibration inside
      the training budget), one batch = one rank's micro-batch, so 256 batches cost what the record
      measured;
    - "self_generated": sequences the trained model samples from BOS (legal after the training cap:
      neither training nor validation data is read).
    """
    from crownq.quant.calibrate import collect_hessians

    qcfg, tcfg = cfg.quantizer, cfg.train
    if qcfg.method != "gptq":
        return None  # round-to-nearest and fp16 export need no Hessians
    if qcfg.calibration_source == "train":
        batches = _training_calibration_batches(cfg, train_files, dist_env)
    elif qcfg.calibration_source == "self_generated":
        from crownq.quant.self_generated import generate_calibration_batches

        batches = generate_calibration_batches(
            model.logits, qcfg.calibration_batches, qcfg.calibration_seqs_per_batch, tcfg.seq_len,
            temperature=qcfg.calibration_temperature, seed=cfg.seed, bos_id=_bos_id(tokenizer_path),
            device=dist_env.device)
    else:
        raise ValueError(f"quantizer.calibration_source={qcfg.calibration_source!r}: expected 'train' or "
                         "'self_generated'")
    # GPTQ applies quantizer.damp itself, so the Hessians are collected undamped.
    return collect_hessians(model, batches, damp=0.0, progress=dist_env.is_main,
                            total=qcfg.calibration_batches, head=qcfg.embed_method == "gptq")


def _training_calibration_batches(cfg: DictConfig, train_files: list[Path], dist_env: DistEnv):
    from crownq.data.loader import DistributedTokenLoader

    tcfg = cfg.train
    loader = DistributedTokenLoader(train_files, rank=0, world_size=1, device=dist_env.device)
    batch_tokens = tcfg.train_batch_tokens // max(1, dist_env.world_size * tcfg.grad_accum_steps)
    batch_tokens = max(tcfg.seq_len, batch_tokens - batch_tokens % tcfg.seq_len)
    for _ in range(cfg.quantizer.calibration_batches):
        x, _y = loader.next_batch(batch_tokens, tcfg.seq_len, 1)
        yield x


def _bos_id(tokenizer_path: Path) -> int:
    import sentencepiece as spm

    bos = spm.SentencePieceProcessor(model_proto=Path(tokenizer_path).read_bytes()).bos_id()  # any path
    if bos < 0:
        raise ValueError(f"{tokenizer_path}: the tokenizer has no BOS piece, which self-generated "
                         "calibration starts every sequence with")
    return bos


class StageClock:
    """One console line per stage with its time (rank 0), and the times for result.json."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, name: str, detail: str = "") -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self._last
        self._last = now
        if self.verbose:
            logger().info(f"{name:<9} {self.seconds[name]:7.1f} s  {detail}")


def _inject_debug_failure(cfg: DictConfig) -> None:
    """Test hooks: `+debug.fail_seed=S` raises in seed S; `+debug.crash_seed=S` kills the process hard."""
    debug = cfg.get("debug") or {}
    if debug.get("crash_seed") is not None and int(debug["crash_seed"]) == int(cfg.seed):
        os._exit(17)  # no exception handling, no result update: what an OOM kill or node failure looks like
    if debug.get("fail_seed") is not None and int(debug["fail_seed"]) == int(cfg.seed):
        raise RuntimeError(f"debug.fail_seed={cfg.seed}: injected failure")


def headline(result: dict[str, Any]) -> str:
    """The numbers a user wants at the end of a run, in three lines."""
    def num(key: str, spec: str = ".5f") -> str:
        value = result.get(key)
        return "-" if value is None else format(value, spec)

    return "\n".join([
        f"crownq seed {result['seed']} (config {result['config_digest'][:12]}): val_bpb {num('val_bpb')} "
        f"[{result.get('val_method', '')}]  val_loss {num('val_loss')} nats",
        f"  pre-quant {num('prequant_val_bpb')}  roundtrip {num('roundtrip_val_bpb')}  sliding "
        f"{num('sliding_val_bpb')}  |  artifact {num('artifact_bytes_total', ',')} B (model "
        f"{num('artifact_bytes_model', ',')} + code {num('artifact_bytes_code', ',')})",
        f"  train {num('train_seconds', '.1f')} s ({result['steps']} steps)  "
        f"eval {num('eval_seconds', '.1f')} s"
        f"  ->  {Path(result['run_dir']) / RESULT_FILENAME}",
    ])
