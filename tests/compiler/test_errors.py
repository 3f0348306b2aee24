"""Mistakes found while resolving the graph: each a SpecError at the offending node."""

from __future__ import annotations

import pytest

from tests.helpers import compile_text, expect_error


def test_unknown_op_suggests_the_nearest() -> None:
    expect_error(
        """
        inputs: {x: [3, 8, 8]}
        layers:
          - {op: Conv2D, out_channels: 4, kernel_size: 3}
        """,
        5, 10, "unknown op 'Conv2D'", "did you mean 'Conv2d'?",
    )  # fmt: skip


def test_misspelt_argument_is_reported_at_the_key() -> None:
    expect_error(
        """
        inputs: {x: [3, 8, 8]}
        layers:
          - {op: Conv2d, out_channels: 4, kernal_size: 3}
        """,
        5, 35, "node 'conv2d' (Conv2d) has no argument 'kernal_size'",
        "did you mean 'kernel_size'?",
    )  # fmt: skip


def test_explicit_inferred_argument_is_checked() -> None:
    expect_error(
        """
        inputs: {x: [3, 32, 32]}
        layers:
          - Flatten
          - {op: Linear, in_features: 100, out_features: 10}
        """,
        6, 31, "in_features is 100", "has 3072 in dim 1", "leave in_features out",
    )  # fmt: skip


def test_cat_shape_mismatch_names_the_dimension() -> None:
    expect_error(
        """
        inputs:
          a: [64, 32, 32]
          b: [64, 31, 31]
        layers:
          - {op: cat, in: [a, b], dim: 1}
        """,
        7, 19, "node 'cat' (cat, dim=1)", "[B,64,32,32] and [B,64,31,31] differ in dim 2",
    )  # fmt: skip


def test_forward_reference() -> None:
    expect_error(
        """
        inputs: {x: [4]}
        layers:
          - {op: add, in: [x, later]}
          - {op: Linear, name: later, out_features: 4}
        """,
        5, 23, "'later' is defined later", "(line 6)",
    )  # fmt: skip


def test_unknown_reference_lists_names() -> None:
    expect_error(
        """
        inputs: {x: [4]}
        layers:
          - {op: Linear, name: fc, out_features: 4}
          - {op: add, in: [fc, fx]}
        """,
        6, 24, "unknown reference 'fx'", "known here: x, fc",
    )  # fmt: skip


def test_duplicate_node_name() -> None:
    expect_error(
        """
        inputs: {x: [4]}
        layers:
          - {op: Linear, name: fc, out_features: 4}
          - {op: Linear, name: fc, out_features: 4}
        """,
        6, 24, "duplicate node name 'fc' (first at line 5)",
    )  # fmt: skip


def test_node_name_that_hides_a_module_method() -> None:
    expect_error(
        """
        inputs: {x: [4]}
        layers:
          - {op: Linear, name: train, out_features: 4}
        """,
        5, 24, "would hide nn.Module.train",
    )  # fmt: skip


def test_bad_expression_points_at_its_argument() -> None:
    expect_error(
        """
        params: {classes: 10}
        inputs: {x: [4]}
        layers:
          - {op: Linear, out_features: "${clases}"}
        """,
        6, 32, "unknown name 'clases'", "did you mean 'classes'?",
    )  # fmt: skip


def test_recursive_blocks() -> None:
    expect_error(
        """
        inputs: {x: [4]}
        blocks:
          A:
            layers: [B]
          B:
            layers: [A]
        layers: [A]
        """,
        8, 14, "uses itself", "A -> B -> A",
    )  # fmt: skip


def test_custom_import_needs_permission() -> None:
    expect_error(
        """
        inputs: {x: [4]}
        layers:
          - {op: "collections.abc:Sized"}
        """,
        5, 10, "not allowed", "--allow-import collections", "allow_imports=['collections']",
    )  # fmt: skip


def test_missing_required_argument() -> None:
    expect_error(
        """
        inputs: {x: [4]}
        layers:
          - {op: Linear}
        """,
        5, 5, "missing required argument out_features",
    )  # fmt: skip


def test_block_param_errors() -> None:
    body = """
        inputs: {x: [4]}
        blocks:
          Mlp:
            params: {width: {type: int}}
            layers:
              - {op: Linear, out_features: "${width}"}
        layers:
          - {op: Mlp, %s}
        """
    expect_error(
        body % "widht: 3", 10, 15, "(Mlp) has no param 'widht'", "did you mean 'width'?"
    )
    expect_error(
        body % "width: wide",
        10,
        22,
        "param 'width': expected int, received string 'wide'",
    )
    expect_error(body % "name: m", 10, 5, "Mlp needs param 'width'")


def test_shared_layer_called_with_other_shapes() -> None:
    expect_error(
        """
        inputs: {x: [4]}
        layers:
          - {op: Linear, name: fc, out_features: 8}
          - {use: fc}
        """,
        6, 5, "shares 'fc'", "in_features=4", "[B,8]",
    )  # fmt: skip


def test_tuple_output_needs_an_element() -> None:
    expect_error(
        """
        inputs: {x: [5, 4]}
        layers:
          - {op: LSTM, hidden_size: 8, batch_first: true}
          - {op: Linear, out_features: 2}
        """,
        6, 5, "returns a tuple of 2", "in: lstm.0",
    )  # fmt: skip


def test_torch_errors_are_wrapped_with_the_node() -> None:
    expect_error(
        """
        inputs: {x: [4, 6]}
        layers:
          - {op: reshape, args: [[-1, 5]]}
        """,
        5, 5, "node 'reshape' (reshape)", "inputs: [B,4,6]",
    )  # fmt: skip


def test_repeat_limits() -> None:
    expect_error(
        """
        inputs: {x: [4]}
        layers:
          - {op: Linear, out_features: 4, repeat: 0}
        """,
        5, 43, "expected at least 1",
    )  # fmt: skip


def test_conv_input_too_small() -> None:
    expect_error(
        """
        inputs: {x: [3, 4, 4]}
        layers:
          - {op: Conv2d, out_channels: 4, kernel_size: 5}
        """,
        5, 5, "too small for Conv2d", "output size would be 0",
    )  # fmt: skip


@pytest.mark.parametrize("bad", ["in: [x, x]", "dim: 1"])
def test_errors_never_escape_as_other_exceptions(bad: str) -> None:
    # Linear takes one input and has no 'dim': both are reported as spec errors.
    with pytest.raises(Exception) as info:
        compile_text(
            f"""
            inputs: {{x: [4]}}
            layers:
              - {{op: Linear, out_features: 2, {bad}}}
            """
        )
    assert type(info.value).__name__ == "SpecError"
    assert info.value.line == 5  # type: ignore[attr-defined]


def test_rnn_arguments_are_checked_too() -> None:
    expect_error(
        """
        inputs: {x: [5, 4]}
        layers:
          - {op: LSTM, hiden_size: 8}
        """,
        5, 16, "node 'lstm' (LSTM) has no argument 'hiden_size'", "did you mean 'hidden_size'?",
    )  # fmt: skip


def test_class_names_must_not_shadow() -> None:
    expect_error(
        """
        inputs: {x: [2]}
        blocks:
          Net: {layers: [ReLU]}
        layers: [Net]
        """,
        5, 3, "block name 'Net' is also the model's name",
    )  # fmt: skip
