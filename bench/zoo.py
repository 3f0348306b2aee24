"""The model zoo against the implementations it matches: forward + backward, and
compile time.

For each zoo spec with a reference registered in ``REFERENCES`` (name -> a callable
making the reference module with the spec's default params), the module nnspec builds
from ``zoo:NAME`` gets the reference's weights (by name where the keys are the same,
else entry by entry in registration order), both compute the same outputs on one
input (checked), and forward + backward of each is timed in interleaved rounds in this
process; the figure is the median of the per-round ratios, nnspec over reference. The
compile time is spec text to built module (parse, validate, resolve, shapes, codegen,
and the source executed and the model constructed), the median of a few runs.

    python -m bench.zoo [--quick]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import nnspec
import nnspec.zoo
from nnspec.compiler.values import TensorValue
from tests.compiler import handwritten as examples
from tests.compiler.examples import copy_weights

from .common import interleave, median, ratio_spread, section_main, table
from .compile_speed import compile_stages

__all__ = ["REFERENCES", "TARGET", "run"]

#: Zoo name -> a callable making the reference module (the spec's default params).
REFERENCES: dict[str, Callable[[], nn.Module]] = {
    "unet": examples.UNet,
}

TARGET = 1.01
ROUND_SECONDS = 0.05
MIN_ROUNDS = 9
BATCH = 1


def _inputs(spec: nnspec.Spec) -> list[torch.Tensor]:
    """One batch for the spec's inputs: normal floats, small integers (token ids)."""
    generator = torch.Generator().manual_seed(0)
    tensors = []
    for value in spec.compiled.model.input_values:
        assert isinstance(value, TensorValue)  # inputs are tensors
        shape = tuple(
            BATCH if k == value.batch_dim else n for k, n in enumerate(value.shape)
        )
        if value.dtype.is_floating_point:
            tensors.append(torch.randn(shape, generator=generator, dtype=value.dtype))
        else:
            tensors.append(torch.randint(0, 2, shape, generator=generator))
    return tensors


def _loss(output: Any) -> torch.Tensor:
    """A scalar of every floating tensor the model returns."""
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return sum(
            (
                _loss(o)
                for o in output
                if not isinstance(o, torch.Tensor) or o.is_floating_point()
            ),
            torch.zeros(()),
        )
    return output.float().mean()


def _step(model: nn.Module, inputs: list[torch.Tensor]) -> None:
    model.zero_grad(set_to_none=True)
    _loss(model(*inputs)).backward()


def _timer(
    model: nn.Module, inputs: list[torch.Tensor], steps: int
) -> Callable[[], float]:
    def seconds_per_step() -> float:
        # torch runs on this one thread: its CPU time is the work, without the time
        # other processes held the cores.
        start = time.thread_time()
        for _ in range(steps):
            _step(model, inputs)
        return (time.thread_time() - start) / steps

    return seconds_per_step


def _same_weights(ours: nn.Module, reference: nn.Module) -> None:
    state = reference.state_dict()
    if list(state) == list(ours.state_dict()):
        ours.load_state_dict(state, strict=True)
    else:
        copy_weights(reference, ours)


def _compare(name: str, seconds: float) -> tuple[float, list[float]]:
    """(median CPU seconds per reference step, per-round ratios nnspec/reference)."""
    torch.manual_seed(0)
    spec = nnspec.load(f"zoo:{name}")
    ours, reference = spec.build(), REFERENCES[name]()
    _same_weights(ours, reference)
    inputs = _inputs(spec)
    ours.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(_loss(ours(*inputs)), _loss(reference(*inputs)))
    ours.train(), reference.train()
    for model in (ours, reference):  # warm-up: allocator, autograd, caches
        for _ in range(2):
            _step(model, inputs)
    start = time.thread_time()
    _step(reference, inputs)
    one = time.thread_time() - start
    steps = max(1, round(ROUND_SECONDS / one))
    rounds = max(MIN_ROUNDS, round(seconds / (2 * steps * one)))
    result = interleave(
        {
            "nnspec": _timer(ours, inputs, steps),
            "reference": _timer(reference, inputs, steps),
        },
        rounds,
    )
    return result.median("reference"), result.ratios("nnspec", "reference")


def _compile_seconds(name: str, repeats: int) -> tuple[float, int]:
    """(median seconds, spec text to built module; the model's parameters)."""
    path = nnspec.zoo.path(name)
    assert path is not None
    text = path.read_text(encoding="utf-8")
    totals = [compile_stages(text, str(path))["total"] for _ in range(repeats)]
    count = sum(p.numel() for p in nnspec.load(path).build(device="meta").parameters())
    return median(totals), count


def run(quick: bool = False) -> tuple[list[str], dict[str, float]]:
    seconds = 5.0 if quick else 20.0
    repeats = 3 if quick else 7
    rows, figures = [], {}
    for name in nnspec.zoo.names():
        compile_s, count = _compile_seconds(name, repeats)
        figures[f"zoo compile {name}"] = compile_s
        if name not in REFERENCES:
            rows.append([f"zoo:{name}", count, compile_s * 1000, "-", "-", "-"])
            continue
        reference_s, ratios = _compare(name, seconds)
        figures[f"zoo {name}"] = median(ratios)
        rows.append(
            [
                f"zoo:{name}",
                count,
                compile_s * 1000,
                reference_s * 1000,
                len(ratios),
                ratio_spread(ratios),
            ]
        )
    compared = [
        v for k, v in figures.items() if k.startswith("zoo ") and "compile" not in k
    ]
    worst = max(compared, default=float("nan"))
    lines = [
        f"Each zoo spec with a registered reference (bench/zoo.py `REFERENCES`), its "
        f"default params, batch {BATCH}: forward + backward on the CPU, torch on "
        f"{torch.get_num_threads()} thread(s), CPU time of that thread, about "
        f"{seconds:.0f} s per model in interleaved rounds of about "
        f"{ROUND_SECONDS * 1000:.0f} ms per side; compile is spec text to built "
        f"module, median of {repeats}.",
        "",
        *table(
            [
                "spec",
                "parameters",
                "compile ms",
                "reference CPU ms/step",
                "rounds",
                "nnspec / reference: median (interquartile range)",
            ],
            rows,
        ),
        "",
        f"- worst median ratio: {worst:.3f} (target <= {TARGET}): "
        + ("met" if worst <= TARGET else "not met"),
    ]
    return lines, figures


def main(argv: list[str] | None = None) -> int:
    return section_main("zoo", run, argv)


if __name__ == "__main__":
    sys.exit(main())
