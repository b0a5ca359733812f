"""Where the Hydra configs are: `conf/` and `sweeps/` of the checkout, or their copies inside an
installed package (`pip install .` ships them as `crownq/_conf` and `crownq/_sweeps`, see setup.py),
so `crownq-run`, `crownq-describe` and the tests find them the same way from any folder."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent


def _pick(packaged: str, checkout: str) -> Path:
    for candidate in (PACKAGE / packaged, CHECKOUT / checkout):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"crownq: neither {PACKAGE / packaged} (an installed package) nor "
                            f"{CHECKOUT / checkout} (a checkout) exists; reinstall crownq "
                            "(`pip install .` from the checkout)")


def conf_dir() -> Path:
    """The config groups (`config.yaml`, arch/, data/, ...)."""
    return _pick("_conf", "conf")


def sweeps_dir() -> Path:
    """The sweep files picked with `+sweeps=NAME`."""
    return _pick("_sweeps", "sweeps")
