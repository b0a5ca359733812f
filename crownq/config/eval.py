"""Schema of the `eval` config group."""

from dataclasses import dataclass, field


@dataclass
class TTTConfig:
    enabled: bool = False
    chunk_tokens: int = 32768
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.002
    momentum: float = 0.9
    epochs: int = 1
    lr_schedule: str = "cosine"  # constant | cosine
    frozen_blocks: int = 0  # freeze the first N blocks
    grad_clip_norm: float = 1.0


@dataclass
class EvalConfig:
    name: str = "sliding64"
    roundtrip: bool = True
    sliding: bool = True
    seq_len: int = 256
    stride: int = 64
    batch_seqs: int = 32
    max_val_tokens: int = 0  # 0 = whole validation split
    budget_seconds: float = 600.0
    ttt: TTTConfig = field(default_factory=TTTConfig)
