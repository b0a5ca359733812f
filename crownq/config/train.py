"""Schema of the `train` config group (owned by the training loop)."""

from dataclasses import dataclass


@dataclass
class TrainConfig:
    name: str = "cpu_tiny"
    device: str = "auto"  # auto | cpu | cuda
    iterations: int = 300
    train_batch_tokens: int = 4096  # global tokens per optimizer step (all ranks, all micro-steps)
    seq_len: int = 256
    grad_accum_steps: int = 1  # micro-steps per optimizer step on each rank
    max_wallclock_seconds: float = 0.0  # 0 = no cap (step-based schedule)
    warmdown_iters: int = 100
    warmup_steps: int = 0  # compile priming steps, then weights and optimizer state are restored
    # Muon (block matrices)
    matrix_lr: float = 0.025
    muon_momentum: float = 0.99
    muon_momentum_warmup_start: float = 0.92
    muon_momentum_warmup_steps: int = 1500
    muon_backend_steps: int = 5
    # Newton-Schulz dtype: bf16 (the record, every device) | fp32 | auto (bf16 on CUDA, fp32 on CPU).
    muon_ns_dtype: str = "auto"
    muon_weight_decay: float = 0.04
    # AdamW (embeddings, scalars)
    tied_embed_lr: float = 0.035
    embed_lr: float = 0.6  # untied input embedding
    head_lr: float = 0.008  # untied output head
    scalar_lr: float = 0.025
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    adam_weight_decay: float = 0.04
    grad_clip_norm: float = 0.3
    val_every: int = 0  # 0 = only at the end
    val_max_tokens: int = 0  # 0 = whole validation split for in-training validation
    log_every: int = 50
    checkpoint_every: int = 0  # steps; 0 = only on signals
    # "Burst" training after the wallclock cap; off by default, counted inside the cap when on.
    burst_steps: int = 0
    burst_lr_scale: float = 0.05  # LR scale of the burst steps (the schedule has reached 0 by then)
    autocast: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | off
    compile: str = "auto"  # auto (on for CUDA) | on | off
    # Seconds reserved inside the training cap for calibration when it reads training batches.
    calibration_reserve_seconds: float = 0.0
    # GPTQ calibration batches (one training micro-batch each); quantizer.calibration_batches reads this.
    calibration_batches: int = 256
    # EMA warm-up for this preset's run length (averaging.ema_warmup reads it): off for the record
    # (6,600 steps forget the init either way), on for few-hundred-step CPU runs, where a plain 0.997
    # EMA would still hold 0.997^300 = 41% of the random init.
    ema_warmup: bool = False
    # ---- frontier switches (docs/frontier.md; spec: ../shared/notes/frontier.md §4). Off by default.
    muon_row_normalize: bool = False  # MuonEq-R: each row of the momentum update to unit norm before NS
    muon_ns_coefficients: str = "quintic"  # quintic (fixed, the March record) | polar_express (5 tuples)
    # AdamW weight decay of the embedding group; -1 = adam_weight_decay (the March record: one value).
    embed_weight_decay: float = -1.0
    # Warmdown over the last fraction of training (time-based under a wallclock cap, else step-based),
    # to a floor of min_lr; 0 = the March record's warmdown_iters schedule.
    warmdown_frac: float = 0.0
    min_lr: float = 0.0
