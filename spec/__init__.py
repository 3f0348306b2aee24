"""nnspec.spec: YAML text -> positioned data -> validated, typed spec."""

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
