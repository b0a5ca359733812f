"""wandb identity from the run's identity: group = sweep-date-cell, name = cell-seedN, job_type = sweep,
tags = user tags + digest + cell + sweep (crownq/tracking.py)."""

import pytest

from crownq.tracking import sweep_group, sweep_stamp, wandb_identity


def _identity(**kw):
    base = {"seed": 1, "config_digest": "ab" * 32, "sweep": "ablate_quantizer",
            "ablation": "quantizer=rtn_int6", "sweep_dir": "multirun/ablate_quantizer/2026-11-25_19-23-19",
            "run_dir": "multirun/ablate_quantizer/2026-11-25_19-23-19/1_seed1"}
    return {**base, **kw}


def test_a_group_is_one_cell_of_one_sweep():
    names = wandb_identity(_identity(), tags=["mine"])
    assert names["group"] == "ablate_quantizer-2026-11-25_19-23-19-quantizer=rtn_int6"
    assert names["name"] == "quantizer=rtn_int6-seed1"
    assert names["job_type"] == "ablate_quantizer"
    assert names["tags"] == ["mine", "digest:" + "ab" * 6, "cell:quantizer=rtn_int6",
                             "sweep:ablate_quantizer-2026-11-25_19-23-19"]


def test_cells_seeds_and_sweeps_never_share_groups_or_names():
    cells = [_identity(ablation=a, seed=s) for a in ("quantizer=gptq_int6", "quantizer=rtn_int6")
             for s in (1, 2)]
    ids = [wandb_identity(c) for c in cells]
    assert len({i["name"] for i in ids}) == 4
    assert len({i["group"] for i in ids}) == 2
    later = wandb_identity(_identity(sweep_dir="multirun/ablate_quantizer/2026-11-26_08-00-00"))
    assert later["group"] != ids[2]["group"]  # the same cell of a later sweep is another group


def test_single_run_and_seed_sweep_labels():
    single = wandb_identity({"seed": 1337, "config_digest": "c" * 64, "sweep": "", "ablation": "",
                             "sweep_dir": "", "run_dir": "outputs/2026-11-25/19-23-19"})
    assert single["group"] == "single-2026-11-25_19-23-19-default"
    assert single["job_type"] == "single" and single["name"] == "default-seed1337"


def test_user_overrides_of_group_and_job_type_win():
    names = wandb_identity(_identity(), group="mine", job_type="probe")
    assert names["group"] == "mine" and names["job_type"] == "probe"


def test_a_folder_without_a_date_gets_a_stable_hash(tmp_path):
    assert sweep_stamp(str(tmp_path / "x")) == sweep_stamp(str(tmp_path / "x"))
    assert sweep_stamp(str(tmp_path / "x")) != sweep_stamp(str(tmp_path / "y"))
    assert sweep_group({"sweep": "seeds", "sweep_dir": str(tmp_path / "x")}).startswith("seeds-")


@pytest.mark.parametrize("cell", ["x" * 300])
def test_long_labels_are_clipped_but_stay_distinct(cell):
    a = wandb_identity(_identity(ablation=cell))
    b = wandb_identity(_identity(ablation=cell[:-1] + "y"))
    assert len(a["group"]) <= 128 and all(len(t) <= 64 for t in a["tags"])
    assert a["group"] != b["group"] and a["name"] != b["name"]
