"""validate(cfg): the schema walked field by field. Every str/int/float field has a rule, and every
closed-set or range-limited field refuses a bad value in < 2 s naming `group.field`, the value and
what is allowed."""

from __future__ import annotations

import copy
import dataclasses
import time

import pytest
from integrity_helpers import RECORD, compose
from omegaconf import OmegaConf

from crownq.config import Config
from crownq.config.validate import RULES, ConfigError, Free, validate


def schema_leaves(schema: type = Config, prefix: str = ""):
    """(dotted name, default) of every non-dataclass field of the schema."""
    for f in dataclasses.fields(schema):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from schema_leaves(type(default), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", default


LEAVES = dict(schema_leaves())
SCALAR = {name for name, d in LEAVES.items() if isinstance(d, str | int | float) and not isinstance(d, bool)}
CHECKED = sorted(name for name, rule in RULES.items() if not isinstance(rule, Free))


@pytest.fixture(scope="module")
def record_cfg():
    return compose(RECORD)


def test_every_scalar_field_has_a_rule():
    missing = sorted(SCALAR - set(RULES))
    assert not missing, (f"add a line to crownq/config/validate.py RULES for {missing} (OneOf, Range, or "
                         "FREE for free text)")


def test_rules_name_only_existing_fields():
    assert not sorted(set(RULES) - set(LEAVES)), "RULES names fields the schema does not have"


def test_the_presets_are_valid(record_cfg):
    validate(record_cfg)
    validate(compose([]))


@pytest.mark.parametrize("name", CHECKED)
def test_a_bad_value_is_refused_naming_field_value_and_allowed(record_cfg, name):
    cfg = copy.deepcopy(record_cfg)
    good = OmegaConf.select(cfg, name)
    bad = RULES[name].bad_example(good)
    OmegaConf.update(cfg, name, bad, merge=False)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    elapsed = time.perf_counter() - t0
    message = str(info.value)
    assert f"{name}={bad!r}" in message and "expected" in message, message
    assert elapsed < 2.0, f"{name}: refused after {elapsed:.2f} s"


def test_every_problem_is_listed_at_once(record_cfg):
    cfg = copy.deepcopy(record_cfg)
    OmegaConf.update(cfg, "quantizer.codec", "lzmaa")
    OmegaConf.update(cfg, "train.matrix_lr", -0.02)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert ("quantizer.codec='lzmaa': expected one of lzma, brotli, zstd, rans, brotli_shuffle, best"
            in str(info.value))
    assert "train.matrix_lr=-0.02: expected a number in [0, inf)" in str(info.value)


@pytest.mark.parametrize("override, expected", [
    ("train.iterations=0", "train.iterations=0: expected a number in [1, inf)"),
    ("train.grad_accum_steps=0", "train.grad_accum_steps=0: expected a number in [1, inf)"),
    ("quantizer.attn_bits=0", "quantizer.attn_bits=0: expected a number in [2, 8]"),
    ("train.matrix_lr=-0.1", "train.matrix_lr=-0.1"),
    ("eval.stride=512", "eval.stride=512: expected at most eval.seq_len=256"),
    ("arch.vocab_size=1000", "arch.vocab_size=1000: expected data.vocab_size=1024"),
    ("arch.vocab_size=2048", "arch.vocab_size=2048: expected data.vocab_size=1024"),
    ("train.train_batch_tokens=1000", "train.train_batch_tokens=1000: expected a multiple of"),
    ("quantizer.scale_floor=fast", "quantizer.scale_floor='fast': expected one of record, tiny or a"),
])
def test_the_unclear_errors_now_name_their_field(override, expected):
    with pytest.raises(ConfigError, match="nothing was run") as info:
        validate(compose([override]))
    assert expected in str(info.value)


def test_the_codec_list_matches_the_codecs():
    from crownq.config.validate import CODECS
    from crownq.quant.codecs import CODEC_CHOICES

    assert tuple(CODECS) == tuple(CODEC_CHOICES)
