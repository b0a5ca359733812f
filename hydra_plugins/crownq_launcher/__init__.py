"""Hydra plugin entry for crownq's launchers (`hydra/launcher=slurm|slurm_8xh100|submitit_local`).

Hydra instantiates launchers only from classes defined inside the `hydra_plugins` namespace package, so
the concrete classes are declared here; the logic lives in `crownq.slurm.launcher`.
"""

from crownq.slurm.launcher import CrownqLocalConf, CrownqSlurmConf, CrownqSubmititLauncher


class SlurmLauncher(CrownqSubmititLauncher):
    _EXECUTOR = "slurm"
    _SCHEMA = CrownqSlurmConf


class LocalLauncher(CrownqSubmititLauncher):
    _EXECUTOR = "local"
    _SCHEMA = CrownqLocalConf
