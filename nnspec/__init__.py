"""nnspec: describe a PyTorch network in YAML; get validated, shape-checked PyTorch source."""

from nnspec.api import Spec, load, loads
from nnspec.spec import SpecError
from nnspec.spec.version import __version__

__all__ = ["Spec", "SpecError", "__version__", "load", "loads"]
