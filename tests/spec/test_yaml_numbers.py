"""Numbers in exponent form (1e-5) are numbers, as in YAML 1.2, not strings."""

from __future__ import annotations

import pytest

import nnspec
from nnspec.spec.yaml_source import parse_value, parse_yaml


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-3", 0.001), ("1E5", 100000.0), ("-2.5e+3", -2500.0), ("1.0e-3", 0.001)],
)
def test_exponent_floats_are_numbers(text: str, value: float) -> None:
    assert parse_yaml(f"lr: {text}\n").data == {"lr": value}
    assert parse_value(text) == value


@pytest.mark.parametrize("text", ["e5", "1e", "1e-", "abc1e5"])
def test_words_that_only_look_like_exponents_stay_strings(text: str) -> None:
    assert parse_yaml(f"x: {text}\n").data == {"x": text}


def test_an_exponent_argument_reaches_the_generated_source_as_a_number() -> None:
    spec = nnspec.loads(
        "nnspec: 1\nname: A\ninputs: {x: [3, 4, 4]}\n"
        "layers:\n  - {op: BatchNorm2d, eps: 1e-5}\n"
    )
    assert "nn.BatchNorm2d(3, eps=1e-05)" in spec.source()
