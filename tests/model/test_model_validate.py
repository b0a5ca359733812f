"""Invalid arch combinations fail at build, naming the field."""

import pytest
from model_helpers import small_cfg

from crownq.model import as_arch_config, build_model

BAD = [
    (dict(num_heads=5), "arch.num_heads"),  # 32 is not divisible by 5
    (dict(num_kv_heads=3), "arch.num_kv_heads"),  # 4 heads not divisible by 3
    (dict(num_kv_heads=0), "arch.num_kv_heads"),
    (dict(model_dim=12, num_heads=4), "arch.num_heads"),  # head dim 3 is odd
    (dict(rope_dims=10), "arch.rope_dims"),  # head dim is 8
    (dict(rope_dims=3), "arch.rope_dims"),  # odd
    (dict(xsa_last_n=5), "arch.xsa_last_n"),  # only 4 layers
    (dict(xsa_last_n=-1), "arch.xsa_last_n"),
    (dict(ve_layers=[4]), "arch.ve_layers"),
    (dict(ve_layers=[-1]), "arch.ve_layers"),
    (dict(ve_layers=[2, 2]), "arch.ve_layers"),
    (dict(ve_dim=0), "arch.ve_dim"),
    (dict(bigram_vocab=1), "arch.bigram_vocab"),
    (dict(bigram_dim=0), "arch.bigram_dim"),
    (dict(mlp_mult=0.0), "arch.mlp_mult"),
    (dict(mlp_mult=1.01), "arch.mlp_mult"),  # 32.32 hidden units
    (dict(mlp_activation="gelu"), "arch.mlp_activation"),
    (dict(attn_backend="xformers"), "arch.attn_backend"),
    (dict(logit_softcap=-1.0), "arch.logit_softcap"),
    (dict(num_layers=0), "arch.num_layers"),
    (dict(vocab_size=1), "arch.vocab_size"),
]


@pytest.mark.parametrize("overrides,field", BAD, ids=[f for _, f in BAD])
def test_invalid_config_names_field(overrides, field):
    with pytest.raises(ValueError) as err:
        build_model(small_cfg(**overrides))
    assert field in str(err.value)
    assert "expected" in str(err.value)


def test_unknown_field_is_rejected_by_name():
    with pytest.raises(ValueError, match="num_layer"):
        as_arch_config({"num_layer": 3})


def test_accepts_dict_and_dictconfig():
    from omegaconf import OmegaConf

    cfg = small_cfg()
    as_dict = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    assert build_model(as_dict).num_params() == build_model(OmegaConf.structured(cfg)).num_params()
