"""The record's golden files and the one place that maps the record's parameter names onto crownq's.

The files live in ../shared/data/ref_golden (beside the repository, never inside it); every parity test
skips, naming the missing folder, where they are absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

REF_GOLDEN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ref_golden"


def load_golden_file(folder: Path, name: str) -> dict:
    """`folder/name` as a plain dict of tensors; skips the test, naming the file, where it is absent."""
    path = folder / name
    if not path.is_file():
        pytest.skip(f"golden file {path} is absent (../shared/data/{folder.name} is laid beside the "
                    "repository in CI)")
    return torch.load(path, weights_only=True)


def load_golden(name: str) -> dict:
    return load_golden_file(REF_GOLDEN, name)


# record name pattern -> crownq name (applied in order; the first match wins)
_RENAMES = [
    (r"^blocks\.(\d+)\.attn\.c_q\.", r"blocks.\1.attn.q_proj."),
    (r"^blocks\.(\d+)\.attn\.c_k\.", r"blocks.\1.attn.k_proj."),
    (r"^blocks\.(\d+)\.attn\.c_v\.", r"blocks.\1.attn.v_proj."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"blocks.\1.attn.out_proj."),
    (r"^blocks\.(\d+)\.attn\.vrl_lambda$", r"blocks.\1.attn.v_mix"),
    (r"^ve_shared\.", "value_embed."),
]


def crownq_name(record_name: str) -> str:
    for pattern, repl in _RENAMES:
        if re.match(pattern, record_name):
            return re.sub(pattern, repl, record_name)
    return record_name


def record_module_name(record_module: str) -> str:
    """A module path of the record ("blocks.0.attn.c_q") -> crownq's ("blocks.0.attn.q_proj")."""
    return crownq_name(record_module + ".").rstrip(".")


def arch_from_record_config(config_json: str) -> dict:
    """The record's constructor arguments -> a crownq `arch` mapping with every record feature on."""
    rc = json.loads(config_json)
    ve_layers = [int(x) for x in str(rc.get("ve_layers", "")).split(",") if x.strip()]
    if not rc.get("ve_enabled"):
        ve_layers = []
    return dict(
        name="record_golden", vocab_size=rc["vocab_size"], num_layers=rc["num_layers"],
        model_dim=rc["model_dim"],
        num_heads=rc["num_heads"], num_kv_heads=rc["num_kv_heads"], mlp_mult=float(rc["mlp_mult"]),
        mlp_activation="leaky_relu2", xsa_last_n=rc["xsa_last_n"], value_residual=bool(rc["use_vrl"]),
        bigram_vocab=rc["bigram_vocab_size"], bigram_dim=rc["bigram_dim"], ve_layers=ve_layers,
        ve_dim=rc["ve_dim"], rope_dims=rc["rope_dims"], rope_base=rc["rope_base"], ln_scale=rc["ln_scale"],
        smear_gate=True, unet_skips=True, resid_mix=True, qk_norm=True, q_gain=True,
        qk_gain_init=rc["qk_gain_init"], tie_embeddings=rc["tie_embeddings"],
        logit_softcap=rc["logit_softcap"],
        tied_embed_init_std=rc["tied_embed_init_std"], orthogonal_init=True, attn_backend="sdpa",
    )


def build_golden_model(golden: dict, **overrides):
    """crownq's GPT with the record's config and the golden weights loaded (strict: every name maps)."""
    from crownq.model import build_model

    arch = arch_from_record_config(golden["config"])
    arch.update(overrides)
    model = build_model(arch)
    state = {crownq_name(k): v for k, v in golden["state_dict"].items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and not unexpected, f"name map incomplete: missing {missing}, unexpected {unexpected}"
    return model
