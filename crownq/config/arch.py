"""Schema of the `arch` config group (owned by the model).

Every feature of the record's GPT is a switch here; `crownq.model.validate_arch` rejects invalid
combinations before anything is built, naming the field (`arch.<field>`).
"""

from dataclasses import dataclass, field


@dataclass
class ArchConfig:
    name: str = "tiny"
    vocab_size: int = 1024
    num_layers: int = 4
    model_dim: int = 128
    num_heads: int = 4
    num_kv_heads: int = 2  # grouped-query attention: each KV head serves num_heads / num_kv_heads heads
    mlp_mult: float = 3.0  # hidden width = mlp_mult * model_dim (must come out a whole number)
    mlp_activation: str = "leaky_relu2"  # leaky_relu(0.5)^2, or "relu2" as the naive baseline
    xsa_last_n: int = 0  # exclusive self-attention on the last N layers
    value_residual: bool = False  # layer 0's values mixed into later layers' values (learned weights)
    bigram_vocab: int = 0  # BigramHash buckets; 0 disables BigramHash
    bigram_dim: int = 128
    bigram_scale_init: float = 0.05
    ve_layers: list[int] = field(default_factory=list)  # shared value embeddings on these layers
    ve_dim: int = 128
    ve_scale_init: float = 0.1
    rope_dims: int = 0  # rotary dims per head (partial RoPE); 0 = full head dim
    rope_base: float = 10000.0
    ln_scale: bool = False  # scale each block's RMSNorm outputs by 1/sqrt(layer_index + 1)
    smear_gate: bool = False  # mix each position's embedding with the previous one's (learned gate)
    unet_skips: bool = True  # encoder/decoder skip connections with learned per-channel weights
    resid_mix: bool = True  # per-block learned mix of the residual stream with the embedding x0
    qk_norm: bool = True  # RMSNorm on queries and keys (per head)
    q_gain: bool = True  # learnable per-head query gain, initialised to qk_gain_init
    qk_gain_init: float = 1.5
    tie_embeddings: bool = True
    logit_softcap: float = 30.0  # 0 disables the tanh softcap
    tied_embed_init_std: float = 0.005
    orthogonal_init: bool = True  # orthogonal block matrices (False: PyTorch's default Linear init)
    attn_backend: str = "auto"  # auto | fa3 | fa2 | sdpa
