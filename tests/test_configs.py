"""Every config file composes: each option of each group, each sweep and each value it sweeps.

The expected lists below are explicit on purpose: a new config file fails this suite until it is
listed here (and so composed by a test).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

EXPECTED_OPTIONS = {
    "arch": ["baseline_9l", "crownq_11l", "frontier_11l", "frontier_tiny", "mid", "tiny"],
    "averaging": ["ema", "ema_9965", "none", "swa", "swa_ema", "swa_ema_25", "swa_ema_75"],
    "data": ["embedded", "embedded_caseops_4096", "fineweb_caseops_sp8192", "fineweb_sp1024",
             "fineweb_sp4096", "fineweb_sp8192"],
    "frontier": ["attn_gate", "doc_attention", "frontier_optim", "full", "lanes", "loop", "mlp4", "muoneq_r",
                 "no_side_tables", "polar_express", "qgain5", "record", "skip_gates", "smear_bos", "xsa_all"],
    "departure": ["clip_row_hessian", "crownq_warmdown", "ema_no_warmup", "qat_blocks_only", "qat_soft_round",
                  "record", "rope_fixed_base", "scale_floor_tiny", "value_residual_half"],
    "eval": ["lora_ttt", "phased_ttt", "roundtrip", "sliding128", "sliding256", "sliding32", "sliding64",
             "ttt_score_first"],
    "logger": ["none", "wandb_offline", "wandb_online"],
    "quantizer": ["frontier", "frontier_embed_gptq", "frontier_gate_int8", "frontier_lqer",
                  "frontier_pergroup", "frontier_sdclip", "frontier_shuffle", "gptq_int5", "gptq_int6",
                  "none", "rtn_int6"],
    "train": ["cpu_mid", "cpu_tiny", "frontier_8xh100", "record_8xh100"],
    "hydra/launcher": ["crownq_local", "crownq_slurm", "crownq_slurm_8xh100", "local"],
    "hydra/job_logging": ["crownq"],
    "preset": ["smoke"],
}
EXPECTED_SWEEPS = ["ablate_averaging", "ablate_crownq", "ablate_departures", "ablate_eval_stride",
                   "ablate_frontier_model", "ablate_frontier_quant",
                   "ablate_quantizer", "seeds"]


def compose(overrides: list[str], hydra_node: bool = False) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from crownq.config import register_configs

    os.environ.setdefault("CROWNQ_ROOT", str(REPO))  # as launch.py: makes sweeps/ a config group
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test_configs"):
        return hydra_compose(config_name="config", overrides=overrides, return_hydra_config=hydra_node)


def options_on_disk(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_every_config_file_is_listed():
    on_disk_groups = sorted(str(p.parent.relative_to(CONF)) for p in CONF.rglob("*.yaml") if p.parent != CONF)
    assert sorted(set(on_disk_groups)) == sorted(EXPECTED_OPTIONS), "a config group without a test"
    for group, expected in EXPECTED_OPTIONS.items():
        assert options_on_disk(group) == expected, f"conf/{group}: list new options in EXPECTED_OPTIONS"
    assert sorted(p.stem for p in (REPO / "sweeps").glob("*.yaml")) == EXPECTED_SWEEPS


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, opts in EXPECTED_OPTIONS.items() for o in opts])
def test_every_option_composes(group, option):
    if not (CONF / group / f"{option}.yaml").is_file():
        pytest.fail(f"conf/{group}/{option}.yaml is listed but missing")
    plus = "+" if group == "preset" else ""  # presets are added on demand (`+preset=smoke`)
    cfg = compose([f"{plus}{group}={option}"], hydra_node=group.startswith("hydra/"))
    if group in ("preset", "hydra/job_logging"):  # global overrides / logging setup: no `name` key
        return
    if group in ("departure", "frontier"):  # global overrides, no `name`: each option turns switches
        changed = OmegaConf.to_container(cfg) != OmegaConf.to_container(compose([]))
        assert changed == (option != "record"), f"conf/{group}/{option}.yaml should change a switch"
        return
    if group not in ("data", "hydra/launcher"):  # data's `name` is the dataset's, not the option's
        assert cfg[group].name == option, f"conf/{group}/{option}.yaml: `name` should be {option!r}"


def test_default_is_the_cpu_config():
    cfg = compose([])
    assert (cfg.arch.name, cfg.data.name, cfg.train.name, cfg.logger.mode) == (
        "tiny", "embedded_sp1024", "cpu_tiny", "offline")
    assert cfg.seed == 1337


def test_record_recipe_composes():
    cfg = compose(["arch=crownq_11l", "data=fineweb_sp1024", "train=record_8xh100", "quantizer=gptq_int6",
                   "averaging=swa_ema", "eval=sliding64", "+sweeps=seeds"], hydra_node=True)
    assert cfg.sweep == "seeds" and cfg.eval.seq_len == cfg.train.seq_len


def _sweep_params(name: str, extra: list[str] | None = None) -> dict[str, list[str]]:
    cfg = compose([f"+sweeps={name}", *(extra or [])], hydra_node=True)
    assert cfg.sweep == name, f"sweeps/{name}.yaml should set `sweep: {name}` (the wandb group)"
    assert f"multirun/{name}/" in str(cfg.hydra.sweep.dir)
    return {k: [v.strip() for v in str(vals).split(",")] for k, vals in cfg.hydra.sweeper.params.items()}


@pytest.mark.parametrize("name", EXPECTED_SWEEPS)
def test_every_sweep_and_every_value_composes(name):
    params = _sweep_params(name)
    assert params["seed"] == ["1337", "42", "7"]
    for key, values in params.items():
        if key == "seed":
            continue
        assert len(values) >= 2, f"sweeps/{name}.yaml: {key} sweeps a single value"
        for value in values:
            cfg = compose([f"+sweeps={name}", f"{key}={value}"])
            if key in ("departure", "frontier"):  # global overrides: it composes, and differs from record
                assert (value == "record") == (cfg == compose([f"+sweeps={name}"])), (name, value)
                continue
            node = OmegaConf.select(cfg, key)
            composed = node.name if isinstance(node, DictConfig) else str(node)
            assert composed == value or float(composed) == float(value), (name, key, value)


@pytest.mark.parametrize("name", EXPECTED_SWEEPS)
def test_sweeps_serve_the_record_config_too(name):
    params = _sweep_params(name, ["arch=crownq_11l", "train=record_8xh100", "data=fineweb_sp1024"])
    assert "seed" in params


def test_typos_and_wrong_types_fail_naming_the_key():
    with pytest.raises(ConfigCompositionException) as typo:
        compose(["train.iterationz=5"])
    assert "iterationz" in str(typo.value) + str(typo.value.__cause__)
    with pytest.raises(ConfigCompositionException) as wrong_type:
        compose(["train.iterations=many"])
    assert "iterations" in str(wrong_type.value) + str(wrong_type.value.__cause__)
    with pytest.raises(ConfigCompositionException):
        compose(["+sweeps=no_such_sweep"])
