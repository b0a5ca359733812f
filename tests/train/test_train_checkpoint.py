"""Checkpoint files: atomic writes, weights_only loading, RNG state round trips, clear errors."""

import random

import numpy as np
import pytest
import torch

from crownq.train.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint


def draw():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    np.random.randn()  # leaves a cached Gaussian in numpy's state: it must survive too
    path = save_checkpoint(tmp_path / "c.pt", {"rng": capture_rng_state()})
    expected = draw()
    draw()
    restore_rng_state(load_checkpoint(path)["rng"])
    assert draw() == expected
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary name was renamed away


def test_overwrite_keeps_the_old_file_until_the_new_one_is_complete(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", {"step": 1})

    def broken_save(obj, f):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path)["step"] == 1


def test_unreadable_or_foreign_files_name_the_path(tmp_path):
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not a crownq training checkpoint"):
        load_checkpoint(foreign)


class Evil:
    """Any class: unpickling it would mean importing and running project code."""


def test_objects_that_need_unpickling_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "x": Evil()}, path)
    with pytest.raises(ValueError, match="evil.pt"):
        load_checkpoint(path)
