"""Schema of the `logger` config group (wandb: offline by default, online, or none)."""

from dataclasses import dataclass


@dataclass
class LoggerConfig:
    name: str = "wandb_offline"
    enabled: bool = True
    mode: str = "offline"  # offline | online | disabled
    project: str = "crownq"
    entity: str = ""  # empty = the account's default entity
    group: str = ""  # empty = the sweep's name, else the config digest
    job_type: str = ""  # empty = "ablation"
    dir: str = ""  # empty = the run's output folder
