"""The record's GPT with every feature a config switch (see docs/model.md)."""

from crownq.model.gpt import GPT, build_model
from crownq.model.layers import QATLinear
from crownq.model.validate import as_arch_config, validate_arch

__all__ = ["GPT", "QATLinear", "as_arch_config", "build_model", "validate_arch"]
