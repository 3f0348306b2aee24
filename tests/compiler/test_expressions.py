"""The expression interpreter: values, symbolic forms, and what it refuses."""

from __future__ import annotations

import ast

import pytest

from nnspec.compiler.expressions import (
    ExpressionError,
    Scope,
    Val,
    const,
    resolve_value,
)


def scope() -> Scope:
    dims = [None, Val(128, ast.Name("in_channels")), Val(32, None)]
    return Scope(
        {
            "out": Val(64, ast.Name("out")),
            "mid": Val(None, ast.Name("mid")),
            "k": const(3),
        },
        shape_of=lambda ref: dims,
        refs=lambda: ["x"],
    )


@pytest.mark.parametrize(
    ("text", "value", "symbolic"),
    [
        ("${mid or out}", 64, "mid or out"),
        ("${out * 2 + k}", 131, "out * 2 + 3"),
        ("${x.shape[1] // 2}", 64, "in_channels // 2"),
        ("${x.shape[-1]}", 32, None),
        ("${2 if out > 10 else 3}", 2, "2 if out > 10 else 3"),
        ("${min(out, k)}", 3, "min(out, 3)"),
        ("${k * 2}", 6, "6"),
        ("${[k, out][1]}", 64, "[3, out][1]"),
        ("${not mid}", True, "not mid"),
        ("${2 ** 10}", 1024, "1024"),
        ("c${k}d", "c3d", "'c3d'"),
        ("$${k}", "${k}", "'${k}'"),
    ],
)
def test_values_and_symbolic_forms(
    text: str, value: object, symbolic: str | None
) -> None:
    result = resolve_value(text, scope())
    assert result.value == value
    assert (ast.unparse(result.sym) if result.sym is not None else None) == symbolic


def test_lists_and_mappings_resolve_recursively() -> None:
    result = resolve_value(["${k}", {"a": "${out}"}], scope())
    assert result.value == [3, {"a": 64}]
    assert ast.unparse(result.sym) == "[3, {'a': out}]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('${__import__("os")}', "calling '__import__' is not allowed"),
        ("${x.__class__}", "attribute .__class__ is not allowed"),
        ("${out.real}", "attribute .real is not allowed"),
        ("${outt}", "unknown name 'outt' in 'outt' (did you mean 'out'?)"),
        ("${x.shape[0]}", "is the batch dimension"),
        ("${x.shape[5]}", "has 3 dimensions"),
        ("${2 ** 10 ** 10}", "exponent too large"),
        ("${'a' * 10 ** 9}", "repetition too large"),
        ("${open('f')}", "calling 'open' is not allowed"),
        ("${[i for i in k]}", "ListComp is not allowed"),
        ("${lambda: 1}", "Lambda is not allowed"),
        ("${out +}", "invalid expression"),
        ("${}", "empty expression"),
        ("${k", "unclosed"),
        ("${out / 0}", "ZeroDivisionError"),
        ("${max(out, key=1)}", "keyword arguments are not allowed"),
    ],
)
def test_refused_expressions(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        resolve_value(text, scope())
    assert message in str(info.value)
