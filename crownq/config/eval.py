"""Schema of the `eval` config group (crownq/eval): which methods run, and how."""

from dataclasses import dataclass, field


@dataclass
class TTTConfig:
    """Legal score-first test-time training (eval=ttt_score_first): each chunk of the validation
    split is scored with sliding windows first, then trained on; the last chunk is never trained on."""

    enabled: bool = False
    chunk_tokens: int = 32768  # targets per chunk (a chunk ends where its last scoring window ends)
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.002
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 0.0
    epochs: int = 1  # passes over each chunk after it is scored
    lr_schedule: str = "cosine"  # constant | cosine (decays over the chunks)
    frozen_blocks: int = 0  # freeze the first N transformer blocks
    grad_clip_norm: float = 1.0  # 0 = no clipping
    batch_seqs: int = 16  # training sequences (of eval.seq_len) per step, over all ranks


@dataclass
class EvalConfig:
    name: str = "sliding64"
    roundtrip: bool = True
    sliding: bool = True
    seq_len: int = 256  # the options set ${train.seq_len}
    stride: int = 64
    batch_seqs: int = 32  # windows per forward on each rank
    max_val_tokens: int = 0  # 0 = whole validation split; else the first N targets (whole sequences)
    budget_seconds: float = 600.0  # the challenge's evaluation budget, checked in each result
    autocast: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | off
    compile: str = "auto"  # auto (on for CUDA) | on | off
    ttt: TTTConfig = field(default_factory=TTTConfig)
