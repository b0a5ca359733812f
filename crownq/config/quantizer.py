"""Schema of the `quantizer` config group: training-time (QAT, CROWN-Q) and export-time knobs."""

from dataclasses import dataclass, field

from omegaconf import II


@dataclass
class QuantizerConfig:
    name: str = "gptq_int6"
    # --- training time (owned by crownq/train + crownq/quant/fake_quant.py) ---
    qat: bool = True
    qat_lr_scale_below: float = 0.15  # late QAT switches on once the LR scale falls under this
    soft_round_temperature: float = 0.1
    soft_round_lr_scale_below: float = 0.02  # soft rounding (temperature above) under this LR scale
    crownq_lambda: float = 0.01
    crownq_divisor: float = 15.0
    crownq_warmdown_only: bool = True
    # --- export time (owned by crownq/quant) ---
    method: str = "gptq"  # gptq | rtn | none (fp16 export)
    attn_bits: int = 6
    mlp_bits: int = 6
    embed_bits: int = 8
    other_bits: int = 8
    passthrough_max_numel: int = 65536  # smaller matrices: fp16; 1-D and <= 4096-value tensors: fp32
    block_size: int = 128
    damp: float = 0.01
    act_order: bool = True
    clip_quantiles: list[float] = field(default_factory=lambda: [0.999, 0.9995, 0.9999, 0.99999, 1.0])
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
    codec: str = "lzma"  # lzma | brotli | zstd | rans (own entropy coder) | best
    lzma_preset: int = 6
    compress_threads: int = 2  # integer sections are split in this many chunks, compressed in parallel
    device: str = "auto"  # where GPTQ runs: auto (cuda when present) | cpu | cuda
