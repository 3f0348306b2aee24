"""The recurrent layers' shape rule: the shapes torch gives, without running the time
loop on the meta device (a long sequence compiled in minutes before)."""

from __future__ import annotations

import itertools

import pytest
import torch

from nnspec.compiler.passes.walk import shapes
from nnspec.compiler.values import TensorValue, TupleValue, Value
from tests.helpers import compile_text, expect_error

CASES = [
    (op, batch_first, bidirectional, layers, proj)
    for op, batch_first, bidirectional, layers, proj in itertools.product(
        ("RNN", "LSTM", "GRU"), (True, False), (True, False), (1, 2), (0, 3)
    )
    if proj == 0 or op == "LSTM"
]


def _shapes(value: Value) -> object:
    if isinstance(value, TupleValue):
        return tuple(_shapes(v) for v in value.items)
    assert isinstance(value, TensorValue)
    return value.shape


def _real(result: object) -> object:
    if isinstance(result, (tuple, list)):
        return tuple(_real(r) for r in result)
    assert isinstance(result, torch.Tensor)
    return tuple(result.shape)


def _no_meta_runs(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    runs: list[object] = []
    original = shapes.run_meta

    def counted(fn: object, *args: object) -> object:
        runs.append(fn)
        return original(fn, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(shapes, "run_meta", counted)
    return runs


@pytest.mark.parametrize(
    ("op", "batch_first", "bidirectional", "layers", "proj"), CASES
)
def test_the_rule_gives_the_shapes_torch_gives(
    op: str,
    batch_first: bool,
    bidirectional: bool,
    layers: int,
    proj: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = _no_meta_runs(monkeypatch)
    extra = f", proj_size: {proj}" if proj else ""
    spec = compile_text(
        f"""
        inputs: {{x: [5, 6]}}
        layers:
          - {{op: {op}, name: rnn, hidden_size: 4, num_layers: {layers},
             batch_first: {str(batch_first).lower()},
             bidirectional: {str(bidirectional).lower()}{extra}}}
        outputs: {{seq: rnn.0, state: rnn.1}}
        """
    )
    assert runs == []  # the rule answered: no meta run of the layer
    inferred = spec.compiled.result.output_value
    assert isinstance(inferred, dict)
    model = spec.build().eval()
    batch = int(inferred["seq"].shape[inferred["seq"].batch_dim or 0])
    with torch.no_grad():
        real = model(torch.randn(batch, 5, 6))
    assert _shapes(inferred["seq"]) == _real(real["seq"])
    assert _shapes(inferred["state"]) == _real(real["state"])


def test_a_long_sequence_compiles_without_a_meta_time_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = _no_meta_runs(monkeypatch)
    spec = compile_text(
        """
        inputs: {x: [1000000, 6]}
        layers:
          - {op: LSTM, name: lstm, hidden_size: 4, batch_first: true}
        outputs: {seq: lstm.0}
        """
    )
    assert runs == []
    assert spec.compiled.result.output_value["seq"].shape[1:] == (1000000, 4)


def test_a_block_keeps_the_hidden_size_symbolic() -> None:
    spec = compile_text(
        """
        blocks:
          Encoder:
            params: {hidden: {type: int}}
            inputs: [x]
            layers:
              - {op: GRU, name: rnn, hidden_size: "${hidden}", batch_first: true,
                 bidirectional: true}
              - {op: Linear, name: proj, in: rnn.0, out_features: 3}
        inputs: {x: [5, 6]}
        layers:
          - {op: Encoder, name: enc, hidden: 4}
        """
    )
    source = spec.source()
    # The Linear after a bidirectional GRU takes 2 * hidden features, in the block's terms.
    assert "nn.Linear(2 * hidden, 3)" in source, source
    model = spec.build()
    assert model(torch.randn(2, 5, 6)).shape == (2, 5, 3)


def test_a_wrong_input_size_is_a_located_error() -> None:
    expect_error(
        """
        inputs: {x: [5, 6]}
        layers:
          - {op: LSTM, name: lstm, input_size: 7, hidden_size: 4, batch_first: true}
        outputs: {seq: lstm.0}
        """,
        5,
        40,
        "input_size is 7",
        "has 6 in dim 2",
    )
