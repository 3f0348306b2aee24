"""What the commands share: one reader for -p and --set; the API's Spec over the
compiler's, which the runtime uses."""

from __future__ import annotations

import pytest
import torch

import nnspec
from nnspec.commands import UsageError, parse_overrides, parse_params
from nnspec.compiler import loaded

OUTPUTS = """\
nnspec: 1
name: Heads
inputs:
  x: [6]
layers:
  - {op: Linear, name: trunk, out_features: 4}
  - {op: Linear, name: head, out_features: 2}
"""


def test_params_are_read_as_yaml() -> None:
    assert parse_params(["n=3", " lr = 1e-3", "act=relu", "sizes=[1, 2]", "e="]) == {
        "n": 3,
        "lr": 0.001,
        "act": "relu",
        "sizes": [1, 2],
        "e": "",
    }
    # text that YAML cannot read stays text
    assert parse_params(["x=[1,"]) == {"x": "[1,"}


def test_params_refuse_a_mapping_and_a_missing_name() -> None:
    with pytest.raises(UsageError, match=r"^-p act: a param value is a number, "):
        parse_params(["act={a: 1}"])
    for item in ("act", "=3"):
        with pytest.raises(UsageError) as info:
            parse_params([item])
        assert str(info.value) == f"-p expects NAME=VALUE, received {item!r}"


def test_overrides_take_mappings_and_drop_the_train_prefix() -> None:
    assert parse_overrides(["train.epochs=2", "compile={mode: default}"]) == {
        "epochs": 2,
        "compile": {"mode": "default"},
    }
    with pytest.raises(UsageError) as info:
        parse_overrides(["epochs"])
    assert str(info.value) == "--set expects KEY=VALUE, received 'epochs'"


def test_the_api_spec_is_the_compilers_with_a_summary() -> None:
    spec = nnspec.loads(OUTPUTS)
    assert isinstance(spec, nnspec.Spec) and isinstance(spec, loaded.Spec)
    assert spec.summary().totals.params == 6 * 4 + 4 + 4 * 2 + 2
    below = loaded.loads(OUTPUTS)
    assert not hasattr(below, "summary")
    assert below.source() == spec.source()


@pytest.mark.parametrize(
    ("outputs", "names"),
    [
        ("", ["head"]),
        ("outputs: [head, trunk]\n", ["head", "trunk"]),
        ("outputs: {logits: head, features: trunk}\n", ["logits", "features"]),
    ],
)
def test_named_outputs_follow_what_forward_returns(
    outputs: str, names: list[str]
) -> None:
    spec = nnspec.loads(OUTPUTS + outputs)
    result = spec.build()(torch.zeros(5, 6))
    if isinstance(result, torch.Tensor):
        result = (result,)
    values = list(result.values()) if isinstance(result, dict) else list(result)
    named = spec.named_outputs()
    assert [name for name, _ in named] == names
    if isinstance(result, dict):
        assert list(result) == names
    for (_, value), tensor in zip(named, values):
        assert tuple(value.shape[1:]) == tuple(tensor.shape[1:])
