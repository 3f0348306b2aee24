"""nnspec profile: a trace TensorBoard and Perfetto open, and a report of the steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import nnspec
from nnspec.cli import main
from nnspec.inspection.profile import (
    matmul_precision,
    peak_tflops,
    profile_spec,
    synthetic_batch,
)

TINY = """\
nnspec: 1
name: Tiny
inputs:
  x: [16]
layers:
  - {op: Linear, name: fc1, out_features: 32}
  - ReLU
  - {op: Linear, name: fc2, out_features: 4}
"""


def trace_events(out: Path) -> list[dict]:
    traces = list(out.glob("*.pt.trace.json"))
    assert len(traces) == 1, traces
    data = json.loads(traces[0].read_text(encoding="utf-8"))
    return data["traceEvents"]


def test_profile_writes_a_trace_with_the_models_operators(tmp_path: Path) -> None:
    spec = nnspec.loads(TINY)
    report = profile_spec(spec, steps=3, out_dir=tmp_path, batch_size=4, device="cpu")
    events = trace_events(tmp_path)
    names = {e.get("name") for e in events}
    # The two Linear layers: forward as addmm, backward as mm.
    assert {"aten::linear", "aten::addmm", "aten::mm", "aten::relu"} <= names
    steps = sorted(n for n in names if n and n.startswith("ProfilerStep#"))
    assert steps == ["ProfilerStep#2", "ProfilerStep#3", "ProfilerStep#4"]
    assert {"forward", "backward", "optimizer"} <= names
    addmm = next(e for e in events if e.get("name") == "aten::addmm")
    assert [4, 16] in addmm["args"]["Input Dims"]  # shapes are recorded
    assert any(e.get("name") == "[memory]" for e in events)  # and memory

    assert report.trace is not None and report.trace.parent == tmp_path
    assert report.steps == 3 and report.batch_size == 4
    assert report.samples_per_s == pytest.approx(4 / report.step_time)
    ops = [op.name for op in report.top_ops]
    assert "aten::addmm" in ops or "aten::mm" in ops
    # forward+backward FLOPs per sample, by hand: 2*(16*32 + 32*4) forward, twice
    # that backward less fc1's input gradient (2*16*32).
    per_sample = 3 * 2 * (16 * 32 + 32 * 4) - 2 * 16 * 32
    assert report.flops_per_step == 4 * per_sample
    assert report.mfu is None  # no MFU on the CPU


def test_profile_cli_prints_the_report(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY, encoding="utf-8")
    out = tmp_path / "trace"
    code = main(
        ["profile", str(spec), "--steps", "3", "--out", str(out), "--device", "cpu"]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "samples/s" in text and "step time" in text
    assert "top operators by self CPU time" in text
    assert f"tensorboard --logdir {out}" in text and "ui.perfetto.dev" in text
    assert len(trace_events(out)) > 0


def test_synthetic_integer_inputs_index_the_embedding() -> None:
    spec = nnspec.loads(
        "nnspec: 1\nname: Emb\ninputs: {tokens: {shape: [6], dtype: int64}}\n"
        "layers:\n  - {op: Embedding, num_embeddings: 5, embedding_dim: 3}\n"
    )
    model = spec.build()
    (tokens,) = synthetic_batch(spec, model, 64, torch.device("cpu"))
    assert tokens.shape == (64, 6) and tokens.dtype == torch.int64
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 5


def test_peaks_pick_the_variant_before_its_family() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "tf32") == 156.0
    assert peak_tflops("NVIDIA A10", "bf16") == 125.0
    assert peak_tflops("NVIDIA A10G", "bf16") is None  # not the A10's numbers
    assert peak_tflops("NVIDIA L40S", "bf16") == 362.0
    assert peak_tflops("NVIDIA L4", "bf16") == 121.0
    assert peak_tflops("Tesla T4", "bf16") is None  # no bf16 tensor cores
    assert peak_tflops("Some Future GPU", "fp32") is None


def test_matmul_precision_follows_dtype_and_torch_setting() -> None:
    assert matmul_precision(torch.bfloat16) == "bf16"
    assert matmul_precision(torch.float16) == "fp16"
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert matmul_precision(torch.float32) == "fp32"
        torch.set_float32_matmul_precision("high")
        assert matmul_precision(torch.float32) == "tf32"
    finally:
        torch.set_float32_matmul_precision(before)
