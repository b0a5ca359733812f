"""The recipe, top to bottom: data -> model -> train -> average -> quantise -> artifact -> evaluate."""

from omegaconf import DictConfig, OmegaConf


def run(cfg: DictConfig) -> dict:
    # Placeholder until the stages land (issue 6 fills this in).
    print(OmegaConf.to_yaml(cfg))
    return {"status": "not_implemented"}
