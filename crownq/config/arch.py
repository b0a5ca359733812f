"""Schema of the `arch` config group (owned by the model)."""

from dataclasses import dataclass, field


@dataclass
class ArchConfig:
    name: str = "tiny"
    vocab_size: int = 1024
    num_layers: int = 4
    model_dim: int = 128
    num_heads: int = 4
    num_kv_heads: int = 2
    mlp_mult: float = 3.0
    mlp_activation: str = "leaky_relu2"  # leaky_relu(0.5)^2, or "relu2" as the naive baseline
    xsa_last_n: int = 0
    value_residual: bool = False
    bigram_vocab: int = 0  # 0 disables BigramHash
    bigram_dim: int = 128
    ve_layers: list[int] = field(default_factory=list)  # shared value embeddings on these layers
    ve_dim: int = 128
    rope_dims: int = 0  # 0 = full head dim
    rope_base: float = 10000.0
    ln_scale: bool = False
    smear_gate: bool = False
    unet_skips: bool = True
    tie_embeddings: bool = True
    logit_softcap: float = 30.0
    qk_gain_init: float = 1.5
    tied_embed_init_std: float = 0.005
    attn_backend: str = "auto"  # auto | fa3 | fa2 | sdpa
