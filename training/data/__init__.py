"""Training data: case discovery, preprocessing (numpy) and the MONAI patch pipeline."""

from training.data.cases import Case, discover_cases, load_case
from training.data.preprocess import Prepared, normalise, prepare

__all__ = ["Case", "Prepared", "discover_cases", "load_case", "normalise", "prepare"]
