"""nnspec export: ONNX and torch.export programs with dynamic batch and named
dimensions, the spec's input and output names, checked against the eager model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import nnspec
from nnspec.cli import main
from nnspec.export import export_model
from nnspec.runtime import Trainer

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

SEQUENCE = """\
nnspec: 1
name: SeqNet
inputs:
  tokens: {shape: [12], dtype: int64}
layers:
  - {op: Embedding, name: embed, num_embeddings: 50, embedding_dim: 16}
  - {op: TransformerEncoderLayer, name: layer, d_model: 16, nhead: 2,
     dim_feedforward: 32, batch_first: true, dropout: 0.0}
  - {op: mean, dim: 1}
  - {op: Linear, name: head, out_features: 3}
outputs: {logits: head, features: layer}
"""


def _dims(values) -> list[list[int | str]]:
    return [
        [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in values
    ]


def test_onnx_keeps_names_and_dynamic_dims(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    spec = nnspec.loads(SEQUENCE)
    model = spec.build()
    out = tmp_path / "seq.onnx"
    report = export_model(spec, model, out, "onnx", {"tokens": [0, 1]})
    assert report.checked_with == "ONNX Runtime on other sizes of the dynamic dims"
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["tokens"]
    assert [o.name for o in graph.output] == ["logits", "features"]  # the dict's keys
    assert _dims(graph.input) == [["batch", "tokens_dim1"]]
    assert _dims(graph.output) == [["batch", 3], ["batch", "tokens_dim1", 16]]
    # Another batch and another sequence length than declared (12), against eager.
    tokens = torch.randint(0, 50, (5, 20))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits, features = session.run(None, {"tokens": tokens.numpy()})
    with torch.no_grad():
        expected = model.eval()(tokens)
    torch.testing.assert_close(
        torch.from_numpy(logits), expected["logits"], atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(
        torch.from_numpy(features), expected["features"], atol=1e-5, rtol=1e-4
    )


def test_pt2_program_runs_on_other_sizes(tmp_path: Path) -> None:
    spec = nnspec.loads(SEQUENCE)
    model = spec.build()
    out = tmp_path / "seq.pt2"
    report = export_model(spec, model, out, "pt2", {"tokens": [0, 1]})
    assert report.max_difference is not None and report.max_difference < 1e-4
    program = torch.export.load(str(out))
    tokens = torch.randint(0, 50, (4, 7))
    with torch.no_grad():
        torch.testing.assert_close(
            program.module()(tokens)["logits"], model.eval()(tokens)["logits"]
        )


def test_export_of_a_run_uses_its_checkpoint(
    tiny_spec: Callable[..., Path], tmp_path: Path, capsys
) -> None:
    spec = tiny_spec()
    trainer = Trainer(spec, tmp_path / "run", progress=False)
    trainer.fit()
    out = tmp_path / "tiny.pt2"
    assert (
        main(
            [
                "export",
                str(tmp_path / "run"),
                "--format",
                "pt2",
                "-o",
                str(out),
                "--checkpoint",
                "last",
            ]
        )
        == 0
    )
    program = torch.export.load(str(out))
    x = torch.randn(9, 6)
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            program.module()(x)["logits"], trainer.model(x)["logits"]
        )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dynamic", "y:1"], "no input 'y'; inputs: x"),
        (["--dynamic", "x:4"], "x has dimensions 1..3 besides the batch"),
        (["--dynamic", "x:3"], "could not export the model with dynamic dims"),
        (["--dynamic", "x"], "--dynamic expects INPUT:DIM"),
        (["-o", "lenet.pt2"], "a onnx file ends in .onnx"),
    ],
)
def test_bad_export_arguments(
    argv: list[str], message: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lenet = Path(__file__).resolve().parents[2] / "examples" / "lenet.yaml"
    assert main(["export", str(lenet), *argv]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_export_never_replaces_a_file_unasked(tmp_path: Path, capsys) -> None:
    lenet = Path(__file__).resolve().parents[2] / "examples" / "lenet.yaml"
    out = tmp_path / "lenet.pt2"
    out.write_text("mine")
    assert main(["export", str(lenet), "--format", "pt2", "-o", str(out)]) == 2
    assert "exists; give --force" in capsys.readouterr().err
    assert out.read_text() == "mine"
