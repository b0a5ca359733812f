"""Schema of the `logger` config group (wandb: offline by default, online, or none)."""

from dataclasses import dataclass, field


@dataclass
class LoggerConfig:
    name: str = "wandb_offline"
    enabled: bool = True
    mode: str = "offline"  # offline | online | disabled
    project: str = "crownq"
    entity: str = ""  # empty = the account's default entity
    group: str = ""  # empty = <sweep>-<date>-<cell> (crownq/tracking.py: one group = one configuration)
    job_type: str = ""  # empty = the sweep's name, or "single"
    tags: list[str] = field(default_factory=list)  # added to the derived digest:/cell:/sweep: tags
    dir: str = ""  # empty = the run's output folder
