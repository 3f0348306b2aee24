"""nnspec: describe a PyTorch network in YAML; get validated, shape-checked PyTorch source."""

from .api import Spec, load, loads
from .spec import SpecError

__all__ = ["Spec", "SpecError", "__version__", "load", "loads"]

__version__ = "0.1.0"
