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
class LoRATTTConfig:
    """Per-document batched LoRA test-time training (eval=lora_ttt, frontier spec 6.3): documents are
    scored chunk by chunk, each with its own LoRA that learns from a chunk only after scoring it."""

    enabled: bool = False
    batch_docs: int = 64  # documents per batch (sorted by length; longest batches first)
    chunk: int = 48  # predictions scored (then trained on) per step
    window: int = 2048  # context of a chunk's forward: document tokens [end - window, end)
    rank: int = 80
    alpha: float = 144.0  # LoRA scale alpha / rank
    lr: float = 1e-4  # AdamW
    beta1: float = 0.0
    beta2: float = 0.99
    eps: float = 1e-10
    weight_decay: float = 0.5  # decoupled (AdamW)
    warm_start_a: bool = True  # a new batch zeroes B and keeps A (PR #1767); false: fresh A per batch
    seed: int = 0  # fresh A ~ U(-1/sqrt(in), 1/sqrt(in)) from seed + batch index


@dataclass
class PhasedTTTConfig:
    """Phased global SGD on already-scored documents on top of lora_ttt (eval=phased_ttt, spec 6.4)."""

    enabled: bool = False
    prefix_docs: int = 2500  # boundary_k = floor(prefix_docs * k / phases) scored documents
    phases: int = 3
    lr: float = 0.001  # SGD, cosine over the phase's chunks, no warm-up
    momentum: float = 0.9
    chunk_tokens: int = 32768  # one optimizer step per chunk; the last chunk is skipped
    seq_len: int = 2048  # sequences a chunk is cut into (split across ranks)
    grad_clip_norm: float = 1.0  # 0 = no clipping


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
    lora_ttt: LoRATTTConfig = field(default_factory=LoRATTTConfig)
    phased_ttt: PhasedTTTConfig = field(default_factory=PhasedTTTConfig)
