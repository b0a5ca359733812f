import sys
from pathlib import Path

# pipeline_compose (Hydra compose of the repo's conf/) lives beside the pipeline tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
