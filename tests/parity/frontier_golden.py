"""The frontier record's golden files (../shared/data/frontier_golden) and the one place that maps the
record's banked state dict onto crownq's per-layer names.

The record keeps each matrix family in one tensor ("bank"): qo_bank [2L, d, d] (Q of layers 0..L-1, then
the output projections), kv_bank [2L, kv, d] (K, then V), mlp_up_bank [L, F, d], mlp_down_bank [L, d, F].
Every parity test skips, naming the folder, where the files are absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from tests.parity.golden import load_golden_file

FRONTIER_GOLDEN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "frontier_golden"


def load_frontier_golden(name: str) -> dict:
    return load_golden_file(FRONTIER_GOLDEN, name)


# record name pattern -> crownq name, for the tensors that are not banks
_RENAMES = [
    (r"^smear_gate\.weight$", "smear.weight"),
    (r"^smear_lambda$", "smear.lam"),
]


def unbank(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """The record's banked state dict -> crownq's state dict (strictly: every tensor lands somewhere)."""
    out: dict[str, torch.Tensor] = {}
    banks = {
        "qo_bank": ("attn.q_proj", "attn.out_proj"),
        "kv_bank": ("attn.k_proj", "attn.v_proj"),
        "mlp_up_bank": ("mlp.fc",),
        "mlp_down_bank": ("mlp.proj",),
    }
    for key, value in state.items():
        if key in banks:
            names = banks[key]
            assert value.size(0) == num_layers * len(names), f"{key}: {tuple(value.shape)}"
            for slot in range(value.size(0)):
                layer, part = slot % num_layers, names[slot // num_layers]
                out[f"blocks.{layer}.{part}.weight"] = value[slot].clone()
            continue
        name = key
        for pattern, repl in _RENAMES:
            if re.match(pattern, key):
                name = re.sub(pattern, repl, key)
                break
        out[name] = value
    return out


def frontier_arch(config_json: str, **overrides) -> dict:
    """The record's Hyperparameters (model part) -> a crownq `arch` mapping with the same switches."""
    rc = json.loads(config_json)
    assert not rc["rope_yarn"] and not rc["attn_out_gate_enabled"] and not rc["gated_attn_enabled"]
    arch = dict(
        name="frontier_golden", vocab_size=rc["vocab_size"], num_layers=rc["num_layers"],
        model_dim=rc["model_dim"], num_heads=rc["num_heads"], num_kv_heads=rc["num_kv_heads"],
        mlp_mult=float(rc["mlp_mult"]), mlp_activation="leaky_relu2", xsa_last_n=rc["xsa_last_n"],
        value_residual=False, bigram_vocab=0, ve_layers=[], rope_dims=rc["rope_dims"],
        rope_base=rc["rope_base"], rope_ref_len=0, ln_scale=rc["ln_scale"],
        smear_gate=rc["smear_gate_enabled"],
        smear_window=rc["gate_window"], smear_bos_mask=True, unet_skips=True,
        skip_gates=rc["skip_gates_enabled"], resid_mix=True, qk_norm=True, q_gain=True,
        qk_gain_init=rc["qk_gain_init"], tie_embeddings=rc["tie_embeddings"],
        logit_softcap=rc["logit_softcap"],
        tied_embed_init_std=rc["tied_embed_init_std"], attn_backend="sdpa",
        num_loops=rc["num_loops"], loop_start=rc["loop_start"], loop_end=rc["loop_end"],
        parallel_start_layer=rc["parallel_start_layer"], parallel_final_lane=rc["parallel_final_lane"],
        attn_gate="sparse" if rc["sparse_attn_gate_enabled"] else "none", attn_gate_window=rc["gate_window"],
        attn_gate_scale=rc["sparse_attn_gate_scale"], attn_gate_init_std=rc["sparse_attn_gate_init_std"],
        doc_attention=True, fused_ce=rc["fused_ce_enabled"],
    )
    arch.update(overrides)
    return arch


def build_frontier_model(golden: dict, *, looping: bool = True, **overrides):
    """crownq's GPT with the frontier golden weights loaded (strict), in eval mode, looping as asked."""
    from crownq.model import build_model

    arch = frontier_arch(golden["config"], **overrides)
    model = build_model(arch)
    state = unbank(golden["state_dict"], arch["num_layers"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and not unexpected, f"name map incomplete: missing {missing}, unexpected {unexpected}"
    model.looping_active = looping
    return model.eval()
