"""State dict -> artifact bytes (quantise, lay out, compress, prune to the budget) and back."""

import logging
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from crownq.quant.artifact import (
    ArtifactError,
    Entry,
    QuantTensor,
    RawTensor,
    assemble,
    layout,
    read_bytes,
    unpack,
)
from crownq.quant.codecs import compress_sections
from crownq.quant.gptq import gptq_tensors
from crownq.quant.prune import PRUNE_COSTS, prune_to_fit
from crownq.quant.rounding import (
    INT8_CLIPS,
    check_choice,
    int8_row_absmax,
    percentile_per_row,
    rtn_clip_search,
)
from crownq.quant.sdclip import SDCLIP_SELECTS, group_k, rtn_sdclip

log = logging.getLogger(__name__)
METHODS = ("gptq", "rtn", "none")
EMBED_METHODS = ("rtn", "gptq")
GATE_SUFFIX = "attn_gate_w"  # the frontier's attention gates (spec 5.3): int8 per row with gate_int8
GATE_NUMEL = (32, 8192)
CONTROL_MAX_NUMEL = 4096  # 1-D tensors and matrices this small are control parameters (control_store)
CONTROL_STORES = ("fp16", "fp32")
DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16",
               torch.float64: "float64"}


@dataclass
class ExportResult:
    blob: bytes
    model_bytes: int
    code_bytes: int
    total_bytes: int
    pruned: int
    seconds: dict[str, float] = field(default_factory=dict)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# The tables that can be the output head (crownq.quant.calibrate keys the head Hessian by them).
HEAD_TABLES = ("tok_emb.weight", "lm_head.weight")


def plan_tensors(state_dict: dict[str, Tensor], groups: dict[str, str], cfg) -> dict[str, tuple[str, int]]:
    """name -> (how, bits): how in gptq | rtn | fp16 | fp32. The single place storage is decided."""
    if cfg.method not in METHODS:
        raise ValueError(f"quantizer.method must be one of {METHODS}, got {cfg.method!r}")
    check_choice("control_store", cfg.control_store, CONTROL_STORES)
    embed_method = getattr(cfg, "embed_method", "rtn")
    check_choice("embed_method", embed_method, EMBED_METHODS)
    gate_int8 = bool(getattr(cfg, "gate_int8", False))
    group_bits = {"attn": cfg.attn_bits, "mlp": cfg.mlp_bits, "embed": cfg.embed_bits,
                  "other": cfg.other_bits}
    plan: dict[str, tuple[str, int]] = {}
    for name, t in state_dict.items():
        if t.dtype not in DTYPE_NAMES:
            raise ValueError(f"export: tensor '{name}' has dtype {t.dtype}; only floating tensors "
                             "can be stored")
        group = groups.get(name, "other")
        if group not in group_bits:
            raise ValueError(f"export: group of '{name}' is {group!r}, expected attn|mlp|embed|other")
        if gate_int8 and name.endswith(GATE_SUFFIX) and t.ndim == 2 and \
                GATE_NUMEL[0] <= t.numel() <= GATE_NUMEL[1]:
            plan[name] = ("gate8", 8)  # before the control rule: gates are small but 2-D
        elif group in ("attn", "mlp") and t.ndim == 2 and cfg.method != "none":
            plan[name] = (cfg.method, group_bits[group])
        elif t.ndim <= 1 or t.numel() <= CONTROL_MAX_NUMEL:
            # Control scalars/vectors (gains, mixes): the record stores them fp16 like every small
            # tensor; control_store=fp32 keeps them exact (tiny, precision-sensitive).
            plan[name] = ("fp32", 32) if cfg.control_store == "fp32" else ("fp16", 16)
        elif cfg.method == "none":
            plan[name] = ("fp16", 16)
        elif t.ndim == 2 and t.numel() > cfg.passthrough_max_numel:
            # Embedding GPTQ needs the output head's input Hessian, which only the head's table has
            # (the tied token embedding, or lm_head): BigramHash / value-embedding tables stay RTN.
            embed_gptq = (group == "embed" and embed_method == "gptq" and cfg.method == "gptq"
                          and name in HEAD_TABLES)
            plan[name] = ("gptq" if embed_gptq else "rtn", group_bits[group])
        else:
            plan[name] = ("fp16", 16)
    return plan


def quantize_state_dict(state_dict: dict[str, Tensor], groups: dict[str, str],
                        hessians: dict[str, Tensor] | None, cfg) -> dict[str, Entry]:
    plan = plan_tensors(state_dict, groups, cfg)
    quantiles = list(cfg.clip_quantiles)
    gptq_names = [n for n, (how, _) in plan.items() if how == "gptq"]
    if gptq_names and not hessians:
        raise ValueError("quantizer.method=gptq needs Hessians (crownq.quant.calibrate.collect_hessians); "
                         "got none")
    check_choice("int8_clip", cfg.int8_clip, INT8_CLIPS)
    missing = [n for n in gptq_names if n not in (hessians or {})]
    if missing:
        raise ValueError(f"quantizer: no Hessian for {missing[:3]} (planned for GPTQ). Embedding GPTQ "
                         "(quantizer.embed_method=gptq) needs the output-head Hessian: collect_hessians(..., "
                         "head=True)")
    sdclip = cfg.clip_select in SDCLIP_SELECTS
    sd_k = {n: group_k(cfg, groups.get(n, "other")) for n in plan} if sdclip else None
    done = gptq_tensors({n: state_dict[n].detach() for n in gptq_names}, hessians or {},
                        {n: plan[n][1] for n in gptq_names}, quantiles, cfg.block_size, cfg.damp,
                        cfg.act_order, _resolve_device(getattr(cfg, "device", "auto")), cfg.scale_floor,
                        cfg.clip_select, sd_k, float(getattr(cfg, "sdclip_lambda", 0.0)),
                        getattr(cfg, "gptq_precision", "fp64")) if gptq_names else {}
    entries: dict[str, Entry] = {}
    for name, t in state_dict.items():
        how, bits = plan[name]
        dtype = DTYPE_NAMES[t.dtype]
        if how == "gptq":
            q, scale = done[name]
            entries[name] = QuantTensor(q.contiguous(), scale, bits, dtype)
        elif how == "rtn":
            w = t.detach().cpu()
            if groups.get(name) not in ("attn", "mlp") and cfg.int8_clip == "percentile":
                # Embeddings / other large tensors: the record's fixed-percentile rule (int8 there).
                q, scale = percentile_per_row(w, bits, cfg.int8_clip_quantile)
            elif sdclip:  # no Hessian here, so the Hessian-aware variant is plain SDClip
                q, scale = rtn_sdclip(w, sd_k[name], bits)
            else:
                q, scale = rtn_clip_search(w, bits, quantiles, cfg.scale_floor, cfg.clip_select)
            entries[name] = QuantTensor(q.contiguous(), scale, bits, dtype)
        elif how == "gate8":
            q, scale = int8_row_absmax(t.detach().cpu())
            entries[name] = QuantTensor(q, scale, bits, dtype)
        else:
            entries[name] = RawTensor(t.detach().cpu().float(), how, dtype)
    rank = int(getattr(cfg, "lqer_rank", 0))
    if rank > 0:
        from crownq.quant.lqer import lqer_repair  # bundled only when LQER is on

        # LQER candidates: every GPTQ / RTN tensor (the frontier's: every GPTQ tensor), not the gates.
        cands = [n for n, (how, _) in plan.items() if how in ("gptq", "rtn")]
        fixes = lqer_repair({n: state_dict[n].detach() for n in cands},
                            {n: entries[n].dequantize() for n in cands}, rank, int(cfg.lqer_top_k),
                            int(cfg.lqer_group))
        for name, factors in fixes.items():
            entries[name].lqer = factors
    return entries


def compress_entries(entries: dict[str, Entry], cfg, perm_cache: dict | None = None
                     ) -> tuple[bytes, dict[str, int], dict[str, str]]:
    """(container bytes, compressed bytes per section, section of each quantised tensor).

    `perm_cache`: per-group row orders of an earlier call, reused (pruning re-compresses often)."""
    threads = int(getattr(cfg, "compress_threads", 2))
    grouping = getattr(cfg, "compressor", "sections")
    meta, raw = layout(entries, chunks=threads, grouping=grouping, perm_cache=perm_cache)
    outs = compress_sections(raw, cfg.codec, cfg.lzma_preset, threads, grouping == "pergroup")
    blob = assemble(meta, {k: (spec, data, len(raw[k])) for k, (spec, data) in zip(raw, outs)})
    sizes = {k: len(data) for k, (_, data) in zip(raw, outs)}
    return blob, sizes, {m["name"]: m["section"] for m in meta if "bits" in m}


def export_model(state_dict: dict[str, Tensor], groups: dict[str, str], hessians: dict[str, Tensor] | None,
                 quant_cfg, code_bytes: int) -> ExportResult:
    """Quantise, compress and (if configured) prune until code + model bytes fit the budget."""
    check_choice("prune_cost", quant_cfg.prune_cost, PRUNE_COSTS)
    t0 = time.perf_counter()
    entries = quantize_state_dict(state_dict, groups, hessians, quant_cfg)
    t1 = time.perf_counter()
    perm_cache: dict = {}
    blob, sizes, section_of = compress_entries(entries, quant_cfg, perm_cache)
    t2 = time.perf_counter()
    seconds = {"quantize": t1 - t0, "compress": t2 - t1}
    target = quant_cfg.budget_bytes - code_bytes - quant_cfg.headroom_bytes
    pruned = 0
    if quant_cfg.prune and quant_cfg.method != "none" and len(blob) > target:
        prunable = {n: e for n, e in entries.items() if n in section_of and groups.get(n) in ("attn", "mlp")}
        # The record ranks +/-1 codes by scale[row]^2 alone; scale_hdiag also weighs the input's H[c, c].
        use_h = quant_cfg.prune_cost == "scale_hdiag" and hessians
        hdiag = {n: hessians[n].diagonal() if use_h and n in hessians else None for n in prunable}
        blob, report = prune_to_fit(prunable, hdiag, section_of,
                                    lambda: compress_entries(entries, quant_cfg, perm_cache)[:2], target,
                                    (blob, sizes))
        pruned = report.pruned
        seconds["prune"] = time.perf_counter() - t2
        log.info("pruned %d +/-1 codes in %d compression(s): %d bytes (target %d)",
                 pruned, report.compressions, len(blob), target)
    elif quant_cfg.prune and quant_cfg.method != "none":
        log.info("pruning not needed: %s bytes <= target %s", f"{len(blob):,}", f"{target:,}")
    seconds["total"] = time.perf_counter() - t0
    return ExportResult(blob, len(blob), code_bytes, len(blob) + code_bytes, pruned, seconds)


def load_artifact(blob_or_path, expected_shapes: dict[str, tuple[int, ...]] | None = None
                  ) -> dict[str, Tensor]:
    """Dequantised state dict from artifact bytes or a path. Validates everything; never unpickles.

    expected_shapes (e.g. {k: v.shape for k, v in model.state_dict().items()}) also checks that the
    artifact holds exactly the model's tensors with the model's shapes.
    """
    blob, where = read_bytes(blob_or_path)
    entries = unpack(blob, where, expected_shapes)  # checked before decoding: bounds the decoded size
    out = {name: e.dequantize() for name, e in entries.items()}
    if expected_shapes is not None:
        missing = sorted(set(expected_shapes) - set(out))
        extra = sorted(set(out) - set(expected_shapes))
        if missing or extra:
            raise ArtifactError(f"{where}: tensors do not match the model: missing {missing[:5]}, "
                                f"unexpected {extra[:5]}")
        for name, shape in expected_shapes.items():
            if tuple(out[name].shape) != tuple(shape):
                raise ArtifactError(f"{where}: tensor '{name}' has shape {tuple(out[name].shape)}, "
                                    f"the model expects {tuple(shape)}")
    return out
