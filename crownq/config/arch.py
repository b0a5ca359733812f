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
    # Initial (weight of layer 0's values, weight of this layer's values): the record's (0.01, 0.99)
    # starts almost without the residual; (0.5, 0.5) was crownq's earlier departure.
    value_residual_init: list[float] = field(default_factory=lambda: [0.01, 0.99])
    bigram_vocab: int = 0  # BigramHash buckets; 0 disables BigramHash
    bigram_dim: int = 128
    bigram_scale_init: float = 0.05
    ve_layers: list[int] = field(default_factory=list)  # shared value embeddings on these layers
    ve_dim: int = 128
    ve_scale_init: float = 0.1
    rope_dims: int = 0  # rotary dims per head (partial RoPE); 0 = full head dim
    rope_base: float = 10000.0
    # Sequences longer than this raise the RoPE base (record: 1024, so 2,048-token training, calibration
    # and evaluation all use 22,081.79 at 16 rotary dims); 0 keeps the base fixed (departure).
    rope_ref_len: int = 1024
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
    # Orthogonal init only for matrices with both sides >= this (the record: 64); smaller side
    # projections start at zero, other small linears at PyTorch's default.
    orthogonal_min_dim: int = 64
    # On CUDA the record keeps the token/bigram/value-embedding tables in bf16 (linears fp32): bf16 | fp32.
    cuda_embedding_dtype: str = "bf16"
    attn_backend: str = "auto"  # auto | fa3 | fa2 | sdpa
    # ---- frontier switches (docs/frontier.md; spec: ../shared/notes/frontier.md §3). All off by default.
    # Depth recurrence: layers loop_start..loop_end (inclusive) run 1 + num_loops times with shared
    # weights once looping is on; training switches it on at fraction loop_enable_at (0 = from step 0).
    num_loops: int = 0
    loop_start: int = 0
    loop_end: int = 0
    loop_enable_at: float = 0.0
    skip_gates: bool = False  # U-Net skip as a sigmoid-gated interpolation (not an addition)
    # Two residual lanes (attention / MLP) from this decoder layer on; -1 = off.
    parallel_start_layer: int = -1
    parallel_final_lane: str = "mean"  # mean | attn | mlp: what the head reads
    # SmearGate window: 0 = the March record's per-channel gate after the norm; N > 0 = the frontier's
    # scalar gate from the first N channels of the raw embedding, before the norm, with a learned lambda.
    smear_window: int = 0
    smear_bos_mask: bool = False  # no smearing into a BOS token (packed documents stay independent)
    bos_id: int = 1  # document separator: SmearGate's BOS mask and document-aware attention read it
    attn_gate: str = "none"  # none | sparse: per-head sigmoid gate on the attention output
    attn_gate_window: int = 12  # the gate reads the first N channels of the attention input
    attn_gate_scale: float = 1.0
    attn_gate_init_std: float = 0.0
    doc_attention: bool = False  # never attend across a BOS boundary inside a packed row (VarLen)
    doc_max_len: int = 0  # documents longer than this are cut into independent segments; 0 = no cut
    fused_ce: bool = False  # training loss through the fused softcapped CE (Triton on CUDA, exact fallback)
