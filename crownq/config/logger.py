"""Schema of the `logger` config group (wandb)."""

from dataclasses import dataclass


@dataclass
class LoggerConfig:
    name: str = "wandb"
    enabled: bool = True
    mode: str = "offline"  # offline | online | disabled
    project: str = "crownq"
    entity: str = ""
    group: str = ""  # empty = sweep name or config digest
    job_type: str = ""  # empty = the ablation's name
    dir: str = ""  # empty = the run's output folder
