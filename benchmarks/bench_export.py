"""Export benchmark on the record model's shapes: GPTQ time, pruning time, bytes per codec vs bounds.

    PYTHONPATH=. python3 benchmarks/bench_export.py [--codecs lzma,brotli,zstd] [--layers N]
    PYTHONPATH=. python3 benchmarks/bench_export.py --mode floors   # record vs tiny scale floor

Builds crownq_11l (27,124,848 params), gives it trained-like weights (Laplace(0, 0.3), see
../shared/notes/parameter-golf.md "Realistic weights") and Hessians (X^T X of random correlated
activations; q/k/v share one, as calibration produces), then prints one table. Timings on a shared
machine are noisy: compare the ratios printed by the same run.

`--mode frontier [--archs crownq_11l,frontier_11l]`: the frontier's export path (docs/artifact.md
"Frontier export") on each model with trained-like weights: GPTQ seconds (record quantile search vs
SDClip, embedding GPTQ int7 included), bytes and seconds of each codec and of per-group compression
on the same integers, LQER's Hessian-weighted error reduction per byte, and pruning needed to fit.

`--mode floors`: the record's export (GPTQ int6 + int8, lzma-6, +/-1 pruning to 16,000,000 - code
bytes - 50,000) under each `quantizer.scale_floor`, for trained-like weights and for the model's own
init weights (what a few-step smoke run exports): artifact bytes before pruning, codes pruned, final.
"""

import argparse
import io
import lzma
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from crownq.config.quantizer import QuantizerConfig  # noqa: E402
from crownq.quant.artifact import QuantTensor  # noqa: E402
from crownq.quant.export import compress_entries, quantize_state_dict  # noqa: E402
from crownq.quant.prune import PruneError, prune_to_fit  # noqa: E402

RECORD_CODE_BYTES = 95_390  # the record's train_gpt.py (../shared/notes/parameter-golf.md)


def build_record_model(arch: str = "crownq_11l"):
    from hydra import compose, initialize_config_dir

    from crownq.config import register_configs
    from crownq.model import build_model

    register_configs()
    conf = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conf")
    data = ["data=fineweb_sp8192"] if arch.startswith("frontier") else []  # the frontier's vocabulary
    with initialize_config_dir(config_dir=os.path.abspath(conf), version_base="1.3"):
        cfg = compose("config", overrides=[f"arch={arch}", *data])
    return build_model(cfg.arch)


def head_hessian(dim: int, seed: int = 1) -> torch.Tensor:
    """The output head's input: RMS-normed correlated activations (the final norm's output)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(dim) + 0.3 * torch.randn(dim, dim, generator=g) / dim**0.5
    x = torch.randn(4096, dim, generator=g) @ mix
    x = x / x.square().mean(-1, keepdim=True).sqrt()
    return x.T @ x / x.shape[0]


def hessian_error(w: torch.Tensor, deq: torch.Tensor, h: torch.Tensor) -> float:
    d = (w.float() - deq.float()).double()
    return float(((d @ h.double()) * d).sum())


def frontier_rows(arch: str, threads: int, code_bytes: int) -> None:
    """One model: GPTQ time, codec bytes on the frontier's integers, LQER per byte, pruning needed."""
    from crownq.quant.artifact import pack
    from crownq.quant.prune import prune_to_fit

    torch.manual_seed(0)
    model = build_record_model(arch)
    groups = model.export_groups()
    sd = {k: torch.distributions.Laplace(0.0, 0.3).sample(v.shape) if v.ndim == 2 and v.numel() > 4096
          else v.detach().clone() for k, v in model.state_dict().items()}
    hessians = fake_hessians(model)
    hessians["tok_emb.weight"] = head_hessian(sd["tok_emb.weight"].shape[1])
    n_gptq = len(model.quantizable_linears()) + 1
    print(f"\n### {arch}: {sum(p.numel() for p in model.parameters()):,} params, {n_gptq} GPTQ matrices "
          f"(embedding {tuple(sd['tok_emb.weight'].shape)} included); torch threads "
          f"{torch.get_num_threads()}")
    base = dict(compress_threads=threads, embed_method="gptq", embed_bits=7, gate_int8=True, codec="brotli")
    timing = []
    for label, kw in (("record quantile search (5 candidates)", {}), ("SDClip", {"clip_select": "sdclip"})):
        cfg = QuantizerConfig(**base, **kw)
        t, c = time.perf_counter(), time.process_time()
        entries = quantize_state_dict(sd, groups, hessians, cfg)
        timing.append((label, time.perf_counter() - t, time.process_time() - c))
    print("| GPTQ of all matrices (+ int8 gates) | wall s | CPU s |\n|---|---|---|")
    for label, wall, cpu in timing:
        print(f"| {label} | {wall:.1f} | {cpu:.1f} |")
    # `entries`: the frontier's integers (SDClip GPTQ int6, int7 embedding, int8 gates), no LQER yet.
    print("\n| codec on the same integers | artifact bytes | vs brotli-11 | wall s |\n|---|---|---|---|")
    sizes = {}
    # brotli-11 first: every other row is compared with it.
    for label, codec, grouping in (("brotli-11", "brotli", "sections"),
                                   ("lzma-6 (record)", "lzma", "sections"),
                                   ("byte-shuffle + brotli-11", "brotli_shuffle", "sections"),
                                   ("rANS", "rans", "sections"),
                                   ("per-group (brotli rest)", "brotli", "pergroup")):
        t = time.perf_counter()
        sizes[label] = len(pack(entries, codec=codec, threads=threads, grouping=grouping))
        dt = time.perf_counter() - t
        rel = 100 * (sizes[label] / sizes["brotli-11"] - 1) if "brotli-11" in sizes else float("nan")
        print(f"| {label} | {sizes[label]:,} | {rel:+.2f}% | {dt:.1f} |", flush=True)
    # LQER: Hessian-weighted error of the repaired tensors, before/after, and the bytes it costs.
    cfg = QuantizerConfig(**base, clip_select="sdclip", lqer_rank=4, lqer_top_k=3, compressor="pergroup")
    with_lqer = quantize_state_dict(sd, groups, hessians, cfg)
    fixed = [n for n, e in with_lqer.items() if isinstance(e, QuantTensor) and e.lqer is not None]
    before = sum(hessian_error(sd[n], entries[n].dequantize(), hessians[n]) for n in fixed)
    after = sum(hessian_error(sd[n], with_lqer[n].dequantize(), hessians[n]) for n in fixed)
    total = sum(hessian_error(sd[n], entries[n].dequantize(), hessians[n]) for n in hessians if n in entries)
    cache: dict = {}
    blob, sec, section_of = compress_entries(with_lqer, cfg, cache)
    cost = len(blob) - sizes["per-group (brotli rest)"]
    print(f"\nLQER rank 4 top 3 ({', '.join(fixed)}): Hessian-weighted error of those tensors "
          f"{before:.4g} -> "
          f"{after:.4g} ({100 * (after / before - 1):+.2f}%; all GPTQ tensors {total:.4g}), {cost:,} bytes, "
          f"{(before - after) / max(cost, 1):.4g} error per byte")
    target = cfg.budget_bytes - code_bytes - cfg.headroom_bytes
    line = (f"full frontier export: {len(blob):,} B; target {target:,} (16,000,000 - code {code_bytes:,} "
            "- headroom)")
    if len(blob) <= target:
        print(f"{line}: fits, no pruning needed", flush=True)
        return
    prunable = {n: e for n, e in with_lqer.items() if groups.get(n) in ("attn", "mlp")}
    t = time.perf_counter()
    try:
        out, rep = prune_to_fit(prunable, {n: None for n in prunable}, section_of,
                                lambda: compress_entries(with_lqer, cfg, cache)[:2], target, (blob, sec))
        print(f"{line}: pruned {rep.pruned:,} +/-1 codes ({rep.compressions} compressions, "
              f"{time.perf_counter() - t:.0f} s) -> {len(out):,} B", flush=True)
    except PruneError as err:
        print(f"{line}: does not fit by pruning ({err})")


def fake_hessians(model, seed: int = 0) -> dict[str, torch.Tensor]:
    """Correlated activations per linear input; linears fed by one input (q, k, v) share its Hessian."""
    g = torch.Generator().manual_seed(seed)
    out, by_input = {}, {}
    for name, lin in model.quantizable_linears():
        k = lin.weight.shape[1]
        key = name.rsplit(".", 1)[0] + (".qkv" if name.rsplit(".", 1)[1] in ("q_proj", "k_proj", "v_proj")
                                        else "." + name.rsplit(".", 1)[1])
        if key not in by_input:
            mix = torch.eye(k) + 0.3 * torch.randn(k, k, generator=g) / k**0.5
            x = torch.randn(2048, k, generator=g) @ mix * torch.rand(k, generator=g).add(0.2)
            x[:, torch.randperm(k, generator=g)[:2]] = 0.0  # a couple of dead inputs
            by_input[key] = x.T @ x / x.shape[0]
        out[f"{name}.weight"] = by_input[key]
    return out


def entropy_bits(q: torch.Tensor) -> float:
    counts = np.bincount(q.reshape(-1).numpy().astype(np.int64) + 128, minlength=256)
    p = counts[counts > 0] / counts.sum()
    return float(-(counts[counts > 0] * np.log2(p)).sum())


def naive_bytes(entries) -> tuple[int, float]:
    """torch.save of the same int8 codes (+ fp16 scales, pass-through tensors), then lzma preset 6."""
    t = time.perf_counter()
    obj = {}
    for name, e in entries.items():
        if isinstance(e, QuantTensor):
            obj[name] = e.q
            obj[name + ".scale"] = e.scale.half()
        else:
            obj[name] = e.value.half() if e.store == "fp16" else e.value
    buf = io.BytesIO()
    torch.save(obj, buf)
    return len(lzma.compress(buf.getvalue(), preset=6)), time.perf_counter() - t


def floors_table(model, hessians: dict[str, torch.Tensor], weights: list[str], floors: list[str],
                 code_bytes: int, threads: int) -> None:
    """Artifact bytes and pruning needed under each scale floor, everything else the record preset."""
    groups = model.export_groups()
    init_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    print("| weights | scale_floor | int6 code entropy (bits) | artifact bytes unpruned | target | "
          "+/-1 codes pruned | final bytes | export s |\n|---|---|---|---|---|---|---|---|")
    for kind in weights:
        torch.manual_seed(0)
        sd = init_sd if kind == "init" else {
            k: torch.distributions.Laplace(0.0, 0.3).sample(v.shape) if v.ndim == 2 and v.numel() > 4096
            else v for k, v in init_sd.items()}
        for floor in floors:
            cfg = QuantizerConfig(scale_floor=floor, compress_threads=threads)
            target = cfg.budget_bytes - code_bytes - cfg.headroom_bytes
            t = time.perf_counter()
            entries = quantize_state_dict(sd, groups, hessians, cfg)
            int6 = [e for e in entries.values() if isinstance(e, QuantTensor) and e.bits == 6]
            ent = sum(entropy_bits(e.q) for e in int6) / sum(e.q.numel() for e in int6)
            blob, sizes, section_of = compress_entries(entries, cfg)
            unpruned = len(blob)
            prunable = {n: e for n, e in entries.items() if groups.get(n) in ("attn", "mlp")}
            try:
                out, rep = prune_to_fit(prunable, {n: None for n in prunable}, section_of,
                                        lambda cfg=cfg, entries=entries: compress_entries(entries, cfg)[:2],
                                        target, (blob, sizes))
                pruned, final = f"{rep.pruned:,}", f"{len(out):,}"
            except PruneError as err:
                pruned, final = "all", f"does not fit ({err})"
            print(f"| {kind} | {floor} | {ent:.3f} | {unpruned:,} | {target:,} | {pruned} | {final} | "
                  f"{time.perf_counter() - t:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("codecs", "floors", "frontier"), default="codecs")
    ap.add_argument("--archs", default="crownq_11l,frontier_11l", help="frontier mode: models")
    ap.add_argument("--weights", default="laplace,init", help="floors mode: laplace (trained-like), init")
    ap.add_argument("--floors", default="record,tiny", help="floors mode: quantizer.scale_floor values")
    ap.add_argument("--code-bytes", type=int, default=RECORD_CODE_BYTES, help="floors mode: for the target")
    ap.add_argument("--codecs", default="lzma,zstd,rans,brotli")
    ap.add_argument("--prune-codec", default="lzma")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    if args.mode == "frontier":
        for arch in args.archs.split(","):
            frontier_rows(arch, args.threads, args.code_bytes)
        return
    torch.manual_seed(0)
    model = build_record_model()
    n_params = sum(p.numel() for p in model.parameters())
    sd = {k: torch.distributions.Laplace(0.0, 0.3).sample(v.shape) if v.ndim == 2 and v.numel() > 4096
          else v.detach().clone() for k, v in model.state_dict().items()}
    hessians = fake_hessians(model)
    if args.mode == "floors":
        print(f"model crownq_11l: {n_params:,} params; torch threads {torch.get_num_threads()}")
        floors_table(model, hessians, args.weights.split(","), args.floors.split(","), args.code_bytes,
                     args.threads)
        return
    cfg = QuantizerConfig(compress_threads=args.threads)
    print(f"model crownq_11l: {n_params:,} params; torch threads {torch.get_num_threads()}")

    t, c = time.perf_counter(), time.process_time()
    entries = quantize_state_dict(sd, model.export_groups(), hessians, cfg)
    t_quant, c_quant = time.perf_counter() - t, time.process_time() - c
    gptq_names = [n for n, g in model.export_groups().items() if g in ("attn", "mlp")]
    print(f"quantize (GPTQ int6 of {len(gptq_names)} matrices + int8 RTN of the rest): {t_quant:.2f} s wall, "
          f"{c_quant:.2f} s CPU (all threads)")

    quant = {n: e for n, e in entries.items() if isinstance(e, QuantTensor)}
    n_vals = sum(e.q.numel() for e in quant.values())
    ent_bytes = sum(entropy_bits(e.q) for e in quant.values()) / 8
    scale_bytes = 2 * sum(e.scale.numel() for e in quant.values())
    raw_bytes = sum(e.value.numel() * (2 if e.store == "fp16" else 4) for n, e in entries.items()
                    if n not in quant)
    bound = ent_bytes + scale_bytes + raw_bytes  # codes at their per-tensor entropy, the rest stored raw
    print(f"\nentropy bound: codes {ent_bytes:,.0f} B ({8 * ent_bytes / n_vals:.4f} bits/value over "
          f"{n_vals:,} codes) + scales {scale_bytes:,} B + pass-through {raw_bytes:,} B = {bound:,.0f} B")
    print("per-tensor code entropy (bits/value), first layer and embeddings:")
    for name, e in quant.items():
        if name.startswith("blocks.0.") or not name.startswith("blocks."):
            print(f"  {name:34s} {tuple(e.q.shape)!s:14s} int{e.bits}  {entropy_bits(e.q) / e.q.numel():.4f}")

    naive, t_naive = naive_bytes(entries)
    print(f"\nnaive baseline (torch.save int8 + lzma-6): {naive:,} B ({t_naive:.1f} s)")
    print(f"{'codec':8s} {'bytes':>12s} {'bits/code':>10s} {'vs bound':>9s} {'vs naive':>9s} "
          f"{'wall s':>8s} {'CPU s':>8s}")
    results = {}
    for codec in args.codecs.split(","):
        cfg.codec = codec
        t, c = time.perf_counter(), time.process_time()
        blob, sizes, section_of = compress_entries(entries, cfg)
        dt, ct = time.perf_counter() - t, time.process_time() - c
        results[codec] = (blob, sizes, section_of, dt, ct)
        code_bits = 8 * sum(v for k, v in sizes.items() if k.startswith("int")) / n_vals
        print(f"{codec:8s} {len(blob):12,d} {code_bits:10.4f} "
              f"{100 * (len(blob) / bound - 1):+8.2f}% {100 * (len(blob) / naive - 1):+8.2f}% "
              f"{dt:8.1f} {ct:8.1f}")

    codec = args.prune_codec if args.prune_codec in results else next(iter(results))
    cfg.codec = codec
    blob, sizes, section_of, t_full, _ = results[codec]
    target = int(len(blob) * 0.995)
    prunable = {n: e for n, e in entries.items() if n in gptq_names}
    hdiag = {n: hessians[n].diagonal() for n in prunable}
    t, c = time.perf_counter(), time.process_time()
    out, rep = prune_to_fit(prunable, hdiag, section_of, lambda: compress_entries(entries, cfg)[:2],
                            target, (blob, sizes))
    t_prune, c_prune = time.perf_counter() - t, time.process_time() - c
    t_full_cpu = results[codec][4]
    print(f"pruning CPU {c_prune:.1f} s vs one full compression CPU {t_full_cpu:.1f} s "
          f"({c_prune / t_full_cpu:.2f} x)")
    print(f"\npruning with {codec} to 0.5% under {len(blob):,} B (target {target:,}): {t_prune:.1f} s, "
          f"{rep.compressions} confirming compression(s), {rep.pruned:,} codes zeroed, final {len(out):,} B "
          f"({'fits' if len(out) <= target else 'OVER'}); one full compression {t_full:.1f} s -> "
          f"pruning = {t_prune / t_full:.2f} x a full compression")


if __name__ == "__main__":
    main()
