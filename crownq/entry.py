"""`crownq-run [overrides]` (the same as `python launch.py [overrides]` in a checkout): one run, or a
sweep with `-m`. Works from any folder, also from a non-editable install: the configs come from
`crownq.paths`, outputs go under the current folder."""

from __future__ import annotations

import sys
from typing import Any


def _task(cfg: Any) -> dict:
    from crownq.sweep_checks import check_config

    check_config(cfg)  # a bad value is refused before torch or the pipeline is even imported
    from crownq.pipeline import run

    try:
        return run(cfg)
    except Exception as exc:  # noqa: BLE001 - a single run ends with one clear line, not a traceback
        if _multirun():
            raise  # the launcher records the job as failed
        from crownq.results import error_line

        print(f"crownq: {error_line(exc)}\n(the full traceback is in the run folder's result.json when "
              "the run got as far as writing one)", file=sys.stderr, flush=True)
        sys.exit(1)


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def main() -> Any:
    import hydra

    from crownq.config import register_configs
    from crownq.paths import conf_dir

    register_configs()
    hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_task)()
    from crownq.sweep_checks import exit_status

    if "torch.distributed" in sys.modules:  # only a run that imported torch can have joined a group
        from crownq.distributed import shutdown

        shutdown()  # under torchrun: ranks leave the process group together, not one by one at exit

    sys.exit(exit_status())  # non-zero when a seed of the sweep failed (allow_failed_seeds=true: 0)


if __name__ == "__main__":
    main()
