"""Benchmarks of the training runtime, run on demand (never inside the tests).

    python bench/train_runtime.py            # writes bench/train_runtime.md

1. Per-step overhead: the same model, data and optimizer, trained by
   nnspec.runtime.Trainer and by a bare loop of the nanoGPT kind (index, forward,
   loss, backward, step). A small MLP makes the framework's share visible.
2. The digits example as written: wall time and best validation accuracy.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import nnspec
from nnspec.runtime import Trainer

ROOT = Path(__file__).resolve().parent.parent

MLP = """\
nnspec: 1
name: Mlp
inputs: {x: [64]}
layers:
  - {op: Linear, name: fc1, out_features: 128}
  - ReLU
  - {op: Linear, name: fc2, out_features: 10}
train:
  data: {source: {synthetic: 8192}, batch_size: 64}
  loss: {fc2: {op: CrossEntropyLoss, target: label}}
  optimizer: {op: AdamW, lr: 0.001}
  steps: 2000
  log_every: 100
"""


def trainer_step_ms(spec_path: Path, out: Path) -> float:
    Trainer(spec_path, out, progress=False).fit()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    rates = [json.loads(line)["samples_per_s"] for line in lines][2:]  # warm
    return 64 / max(rates) * 1000  # the fastest window: the least disturbed


def bare_step_ms(spec_path: Path, steps: int = 2000) -> float:
    torch.manual_seed(0)
    model = nnspec.load(spec_path).build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.001)
    x, y = torch.randn(8192, 64), torch.randint(0, 10, (8192,))
    loss_fn = torch.nn.CrossEntropyLoss()
    order = torch.randperm(8192)
    times = []
    for step in range(steps):
        if step % 100 == 0:
            begin = time.perf_counter()
        i = (step * 64) % (8192 - 64)
        idx = order[i : i + 64]
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 99:
            loss.item()  # the same read-back as a logged step
            times.append((time.perf_counter() - begin) / 100)
    return min(times[2:]) * 1000


def main() -> int:
    torch.set_num_threads(1)  # steadier numbers on a shared machine
    results: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "mlp.yaml"
        spec_path.write_text(MLP)
        rounds = [
            (bare_step_ms(spec_path), trainer_step_ms(spec_path, Path(tmp) / f"r{i}"))
            for i in range(3)
        ]
        bare = min(r[0] for r in rounds)
        ours = min(r[1] for r in rounds)
        results += [
            "## Per-step overhead (MLP 64-128-10, batch 64, AdamW, CPU, 1 thread)",
            "",
            "| loop | ms per step (fastest 100-step window of 3 runs of 2,000) |",
            "|---|---|",
            f"| bare loop | {bare:.3f} |",
            f"| nnspec Trainer | {ours:.3f} |",
            "",
            f"Overhead: {ours - bare:+.3f} ms per step ({(ours / bare - 1) * 100:+.1f}%).",
            "",
        ]
        begin = time.perf_counter()
        result = Trainer(
            ROOT / "examples" / "digits.yaml", Path(tmp) / "digits", progress=False
        ).fit()
        seconds = time.perf_counter() - begin
        results += [
            "## examples/digits.yaml as written (CPU, 1 thread)",
            "",
            f"- wall time: {seconds:.1f} s for {result.step} steps",
            f"- best {result.best['monitor']}: {result.best['value']:.4f} "
            f"at step {result.best['step']}",
            "",
        ]
    header = [
        "# Training runtime benchmarks",
        "",
        f"`python bench/train_runtime.py` on {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"torch {torch.__version__}, on a 2-core machine shared with other work",
        "(hence the fastest window rather than a mean).",
        "",
    ]
    text = "\n".join(header + results)
    (ROOT / "bench" / "train_runtime.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
