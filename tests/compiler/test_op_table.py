"""The op table, shape rules as facts of it, call kinds, and the pass list."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import pytest

from nnspec.cli import compile_main
from nnspec.compiler import op_table
from nnspec.compiler.ir import CallKind
from nnspec.compiler.op_table import OPS, InferredArg, define_op, record_of
from nnspec.compiler.ops import resolve_op
from nnspec.compiler.pipeline import PIPELINE
from nnspec.compiler.shape_rules import Fallback, ShapeRuleBug
from nnspec.spec.errors import SpecError
from nnspec.spec.torch_ops import INFERRED_ARGS
from tests.helpers import compile_text, expect_error, spec_text

LINEAR = """
inputs: {x: [8]}
layers:
  - {op: Linear, out_features: 4}
"""


def _with_rule(monkeypatch: pytest.MonkeyPatch, name: str, rule: object) -> None:
    monkeypatch.setitem(OPS, name, dataclasses.replace(OPS[name], rule=rule))


def test_a_rule_that_raises_is_reported_as_a_bug_naming_op_and_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(call: object) -> object:
        return {}["missing"]

    _with_rule(monkeypatch, "Linear", broken)
    with pytest.raises(ShapeRuleBug) as info:
        compile_text(LINEAR)
    message = str(info.value)
    assert "shape rule of Linear" in message
    assert "broken" in message
    assert "KeyError" in message
    assert "bug in nnspec" in message
    assert isinstance(info.value.__cause__, KeyError)


def test_a_function_rule_that_raises_is_a_bug_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(call: object) -> object:
        raise TypeError("wrong")

    _with_rule(monkeypatch, "relu", broken)
    with pytest.raises(ShapeRuleBug, match=r"shape rule of relu .*TypeError: wrong"):
        compile_text("inputs: {x: [8]}\nlayers:\n  - relu\n")


def test_fallback_runs_the_op_on_meta(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def uncovered(call: object) -> object:
        calls.append("rule")
        raise Fallback

    _with_rule(monkeypatch, "Linear", uncovered)
    spec = compile_text(LINEAR)
    assert calls == ["rule"]
    assert spec.compiled.result.output_value.shape[1:] == (4,)
    assert "nn.Linear(8, 4)" in spec.source()


def test_a_shape_error_of_a_rule_is_the_spec_s_mistake_at_the_node() -> None:
    expect_error(
        """
        inputs: {x: [3, 8, 8]}
        layers:
          - {op: Conv2d, out_channels: 4, kernel_size: 9}
        """,
        5,
        5,
        "node 'conv2d' (Conv2d",
        "too small for Conv2d",
    )


def test_every_op_with_inferred_arguments_has_them_in_its_record() -> None:
    for name, args in INFERRED_ARGS.items():
        record = OPS[name]
        assert [(a.name, a.dim) for a in record.inferred] == list(args)
    assert OPS["LayerNorm"].inferred == (InferredArg("normalized_shape", -1, True),)
    assert OPS["Linear"].inferred == (InferredArg("in_features", -1, False),)


def test_records_hold_rule_sequence_and_limits() -> None:
    assert OPS["cat"].sequence and OPS["stack"].sequence
    assert OPS["cat"].rule is not None and OPS["stack"].rule is None
    assert OPS["flatten"].rule_params == (("start_dim", 0), ("end_dim", -1))
    assert OPS["Conv2d"].limits["stride"].kind == "size"
    assert OPS["Conv2d"].rule_name == "shape_rules.conv"
    assert OPS["Conv2d"].kind == "module" and OPS["relu"].kind == "function"


def test_a_second_rule_for_an_op_is_refused() -> None:
    with pytest.raises(AssertionError, match="two shape rules"):
        define_op("Linear", rule=lambda call: call)
    assert OPS["Linear"].rule is not None


def test_a_custom_op_has_no_facts() -> None:
    op = resolve_op(
        "tests.compiler.fixtures.custom_layers:TinyNet", {}, frozenset({"tests"})
    )
    record = record_of(op)
    assert record.rule is None and not record.inferred and not record.limits
    assert record.positional == op_table.POSITIONAL_NAMES


def test_calls_say_their_kind() -> None:
    spec = compile_text(
        """
        blocks:
          Twice:
            inputs: [x]
            layers:
              - {op: Linear, out_features: 8}
        inputs: {x: [8]}
        layers:
          - {op: Linear, out_features: 8, name: lin}
          - {op: Twice, name: blk}
          - {op: ReLU, repeat: 2, name: acts}
          - {use: lin, name: again}
          - {op: add, in: [again, lin], name: total}
        """
    )
    kinds = {c.node: c.kind for c in spec.compiled.model.calls}
    assert kinds == {
        "lin": CallKind.MODULE,
        "blk": CallKind.BLOCK,
        "acts": CallKind.REPEAT,
        "again": CallKind.SHARED,
        "total": CallKind.FUNCTION,
    }


def test_the_pipeline_is_one_list_whose_stages_are_the_reported_ones() -> None:
    names = [p.name for p in PIPELINE]
    assert names[0] == "validate" and names[-1] == "generate"
    stages = list(dict.fromkeys(p.stage for p in PIPELINE))
    seconds = compile_text(LINEAR).compiled.stage_seconds
    assert list(seconds) == stages == ["validate", "resolve", "shapes", "codegen"]


# Argument values of types the rules do not read: each rule covers them (a result
# or a ShapeError) or leaves them to torch (Fallback), so every compile ends in a
# model or a SpecError, never in a ShapeRuleBug.
_ODD = [None, "a", "2.0", 2.5, [], ["a", "b"], [None, 2], {"a": 1}]
_RULED = [
    ("Conv2d", "[3, 8, 8]", "{op: Conv2d, out_channels: 4, kernel_size: 3", "padding"),
    ("MaxPool2d", "[3, 8, 8]", "{op: MaxPool2d, kernel_size: 2", "stride"),
    ("AdaptiveAvgPool2d", "[3, 8, 8]", "{op: AdaptiveAvgPool2d", "output_size"),
    ("LayerNorm", "[3, 8]", "{op: LayerNorm", "normalized_shape"),
    ("flatten", "[3, 8]", "{op: flatten", "start_dim"),
    ("Upsample", "[3, 8, 8]", "{op: Upsample", "scale_factor"),
]


@pytest.mark.parametrize(
    ("op", "shape", "head", "arg"), _RULED, ids=[r[0] for r in _RULED]
)
def test_rules_meet_odd_argument_values_without_a_bug(
    op: str, shape: str, head: str, arg: str
) -> None:
    assert OPS[op].rule is not None
    for value in _ODD:
        body = f"inputs: {{x: {shape}}}\nlayers:\n  - {head}, {arg}: {json.dumps(value)}}}\n"
        with contextlib.suppress(SpecError):
            compile_text(body)


def test_the_command_line_reports_a_rule_bug_as_an_internal_error(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken(call: object) -> object:
        return {}["missing"]

    _with_rule(monkeypatch, "Linear", broken)
    spec = tmp_path / "linear.yaml"
    spec.write_text(spec_text(LINEAR))
    out = tmp_path / "linear.py"
    assert compile_main([str(spec), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "shape rule of Linear" in err
    assert "Traceback" not in err
    assert not out.exists()
