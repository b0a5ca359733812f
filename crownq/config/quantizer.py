"""Schema of the `quantizer` config group: training-time (QAT, CROWN-Q) and export-time knobs."""

from dataclasses import dataclass, field

from omegaconf import II


@dataclass
class QuantizerConfig:
    name: str = "gptq_int6"
    # --- training time (owned by crownq/train + crownq/quant/fake_quant.py) ---
    qat: bool = True
    qat_lr_scale_below: float = 0.15  # late QAT switches on once the LR scale falls under this
    # Which linears late QAT and CROWN-Q act on: all_linears (the record: block linears plus the
    # BigramHash and value-embedding projections) | blocks (attention and MLP linears only).
    qat_coverage: str = "all_linears"
    # QAT gradient: ste (the record: straight-through at every temperature) | soft_round (the gradient
    # of the soft-round surrogate below soft_round_lr_scale_below).
    qat_gradient: str = "ste"
    soft_round_temperature: float = 0.1
    soft_round_lr_scale_below: float = 0.02  # soft rounding (temperature above) under this LR scale
    crownq_lambda: float = 0.01
    crownq_divisor: float = 15.0
    # When the CROWN-Q term is added: qat (the record: while late QAT is on and LR scale < 1) |
    # warmdown (whenever LR scale < 1) | always.
    crownq_window: str = "qat"
    # --- export time (owned by crownq/quant) ---
    method: str = "gptq"  # gptq | rtn | none (fp16 export)
    attn_bits: int = 6
    mlp_bits: int = 6
    embed_bits: int = 8
    other_bits: int = 8
    passthrough_max_numel: int = 65536  # smaller matrices: fp16; 1-D and <= 4096-value: control_store
    block_size: int = 128
    # GPTQ arithmetic: fp64 (codes independent of BLAS thread count and device; equal to the record's on
    # its golden matrices) | fp32 (the record's own dtype; its codes move with the summation order).
    gptq_precision: str = "fp64"
    damp: float = 0.01
    act_order: bool = True
    clip_quantiles: list[float] = field(default_factory=lambda: [0.999, 0.9995, 0.9999, 0.99999, 1.0])
    # Record values first; the alternatives are departures (docs/departures.md, crownq/quant/rounding.py).
    scale_floor: str = "record"  # record: row scale >= 1/qmax (1/31 int6) | tiny: >= 2^-14 | a number
    # matrix_mse: one clip quantile per matrix | row_hessian: per row | sdclip: scale k x std(row) / qmax
    # with k per group (sdclip_k_*) | sdclip_hessian: the same widened by row importance (sdclip_lambda)
    clip_select: str = "matrix_mse"
    int8_clip: str = "percentile"  # percentile: the record's fixed per-row clip | search: as int6
    int8_clip_quantile: float = 0.9999984  # the record's 99.99984th percentile (int8_clip=percentile)
    control_store: str = "fp16"  # 1-D / <= 4096-value tensors: fp16 (record) | fp32 (exact)
    prune_cost: str = "scale"  # order of +/-1 pruning: scale: scale[row]^2 | scale_hdiag: x H[col, col]
    # Follows the training preset (cpu_tiny 16, record 256): calibration is forward passes at the
    # training micro-batch size, so its cost scales with the training setup, not the quantizer.
    calibration_batches: int = II("train.calibration_batches")
    calibration_source: str = "train"  # train | self_generated
    # self_generated: sequences sampled from the trained model (legal after the training cap). No KV
    # cache, so a batch costs ~seq_len forward passes: use a few batches (docs/artifact.md).
    calibration_temperature: float = 0.8
    calibration_seqs_per_batch: int = 8
    prune: bool = True
    budget_bytes: int = 16_000_000
    headroom_bytes: int = 50_000
    # Code bytes = the size of this configuration's single-file submission (crownq/submit/bundle.py):
    # compressed (the default: stripped, lzma/brotli, base85 in a self-extracting wrapper, as later
    # records ship; ~66 KB for the record configuration, under the record's own 95,390 raw bytes) |
    # raw (the file as rendered, ~340 KB: crownq's closure is larger than the record's one script).
    code_bytes_mode: str = "compressed"
    # --- frontier export switches (../shared/notes/frontier.md 5, docs/artifact.md); all off by default ---
    sdclip_k_attn: float = 13.0  # SDClip k of attention matrices (clip_select sdclip*)
    sdclip_k_mlp: float = 11.5
    sdclip_k_embed: float = 14.0  # also the k of the embedding's GPTQ (embed_method gptq)
    sdclip_k_other: float = 12.85
    sdclip_lambda: float = 0.175  # sdclip_hessian: weight of row importance
    # Large embedding tables: rtn (the record: int8 round-to-nearest, int8_clip) | gptq (GPTQ at
    # embed_bits with the Hessian of the output head's inputs; tied embeddings: tok_emb.weight).
    embed_method: str = "rtn"
    gate_int8: bool = False  # *.attn_gate_w with 32..8192 values: int8 per row (max|row|/127) instead of fp16
    lqer_rank: int = 0  # LQER: 0 = off; r > 0 = rank-r repair of the lqer_top_k worst tensors
    lqer_top_k: int = 3
    lqer_group: int = 64  # B's int4 scale group (asymmetric packing)
    compressor: str = "sections"  # sections: by bit width | pergroup: by role, rows reordered, transposed
    codec: str = "lzma"  # lzma | brotli | zstd | rans (own entropy coder) | brotli_shuffle | best
    lzma_preset: int = 6
    compress_threads: int = 2  # integer sections are split in this many chunks, compressed in parallel
    device: str = "auto"  # where GPTQ runs: auto (cuda when present) | cpu | cuda
