"""nnspec.spec, the first stage: YAML text -> positioned data -> validated, typed spec.

It imports no other stage of nnspec (only PyYAML, jsonschema, pydantic and the
standard library; ``torch_ops`` reads torch's signatures). Everything above it, the
compiler first, builds on the ``SpecModel`` and ``Document`` it gives.
"""

from .errors import Diagnostic, SpecError, suggest
from .model import BlockParam, BlockSpec, InitRule, InputSpec, NodeSpec, SpecModel
from .validate import validate_document
from .yaml_source import Document, parse_yaml

__all__ = [
    "BlockParam",
    "BlockSpec",
    "Diagnostic",
    "Document",
    "InitRule",
    "InputSpec",
    "NodeSpec",
    "SpecError",
    "SpecModel",
    "parse_yaml",
    "suggest",
    "validate_document",
]
