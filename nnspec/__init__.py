"""nnspec: describe a PyTorch network in YAML; get validated, shape-checked PyTorch source.

The top stage: the Python API (``nnspec.load``) and the command line, which may import
every stage below (spec, compiler, runtime, inspection); none of those imports it.
"""

from .api import Spec, load, loads
from .spec import SpecError
from .spec.version import __version__

__all__ = ["Spec", "SpecError", "__version__", "load", "loads"]
