"""Names in generated code; the rules themselves are part of the language (spec.naming)."""

from ..spec.naming import (
    Namespace,
    class_name_problem,
    local_name,
    name_problem,
    node_name_problem,
    snake_case,
)

__all__ = [
    "Namespace",
    "class_name_problem",
    "local_name",
    "name_problem",
    "node_name_problem",
    "snake_case",
]
