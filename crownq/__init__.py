"""crownq: parameter-golf experiments (train, compress, score) as Hydra-configured sweeps."""

__version__ = "0.1.0"
