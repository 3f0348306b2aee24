"""Generated code against hand-written code: forward + backward, same weights.

Each case builds the model from its spec and its hand-written equivalent, copies the
weights across, and times forward + backward (a mean of the output as the loss, the
gradients cleared each step) over the same input. The pairs run in interleaved rounds;
the figure is the median of the per-round ratios, generated over hand-written.

    python -m bench.overhead [--quick]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import nnspec
from tests.compiler import handwritten as examples
from tests.compiler.examples import copy_weights

from . import handwritten
from .common import ROOT, interleave, median, ratio_spread, section_main, table

__all__ = ["CASES", "Case", "run"]

TARGET = 1.02
ROUND_SECONDS = 0.03
MIN_ROUNDS = 9


@dataclass
class Case:
    spec: str  # relative to the repository root
    hand: Callable[[], nn.Module]
    input_shape: tuple[int, ...]


CASES = {
    "LeNet (batch 64)": Case("examples/lenet.yaml", examples.LeNet, (64, 3, 32, 32)),
    "U-Net (batch 1, 3x64x64)": Case(
        "examples/unet.yaml", examples.UNet, (1, 3, 64, 64)
    ),
    "residual MLP, 16 blocks (batch 64)": Case(
        "bench/specs/residual_mlp.yaml", handwritten.ResidualMLP, (64, 128)
    ),
}


def _step(model: nn.Module, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    model(x).float().mean().backward()


def _timer(model: nn.Module, x: torch.Tensor, steps: int) -> Callable[[], float]:
    def seconds_per_step() -> float:
        # torch runs on this one thread: its CPU time is all the work, and none of
        # the time other processes held the cores.
        start = time.thread_time()
        for _ in range(steps):
            _step(model, x)
        return (time.thread_time() - start) / steps

    return seconds_per_step


def _pair(case: Case) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    generated = nnspec.load(ROOT / case.spec).build()
    hand = case.hand()
    copy_weights(generated, hand)
    return generated, hand


def measure(case: Case, seconds: float) -> tuple[float, list[float]]:
    """(median CPU seconds per hand-written step, per-round ratios generated over
    hand-written), over about ``seconds``."""
    generated, hand = _pair(case)
    x = torch.randn(case.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if not torch.allclose(generated(x), hand(x), atol=1e-5):
            raise RuntimeError(f"{case.spec}: the two models compute different things")
    for model in (generated, hand):  # warm-up: allocator, autograd, caches
        for _ in range(3):
            _step(model, x)
    start = time.thread_time()
    _step(hand, x)
    one = time.thread_time() - start
    # Short rounds, so that both sides of a round see the same machine.
    steps = max(1, round(ROUND_SECONDS / one))
    rounds = max(MIN_ROUNDS, round(seconds / (2 * steps * one)))
    result = interleave(
        {
            "generated": _timer(generated, x, steps),
            "hand": _timer(hand, x, steps),
        },
        rounds,
    )
    return result.median("hand"), result.ratios("generated", "hand")


def run(quick: bool = False) -> tuple[list[str], dict[str, float]]:
    seconds = 5.0 if quick else 30.0
    rows, figures, worst = [], {}, 0.0
    for name, case in CASES.items():
        hand_seconds, ratios = measure(case, seconds)
        ratio = median(ratios)
        worst = max(worst, ratio)
        figures[f"overhead {name}"] = ratio
        rows.append([name, hand_seconds * 1000, len(ratios), ratio_spread(ratios)])
    lines = [
        f"Forward + backward on the CPU, torch on {torch.get_num_threads()} thread(s), "
        f"CPU time of that thread; about {seconds:.0f} s per model in interleaved "
        f"rounds of about {ROUND_SECONDS * 1000:.0f} ms (at least one step) per side.",
        "",
        *table(
            [
                "model",
                "hand-written CPU ms/step",
                "rounds",
                "generated / hand-written: median (interquartile range)",
            ],
            rows,
        ),
        "",
        f"- worst median ratio: {worst:.3f} (target <= {TARGET}): "
        + ("met" if worst <= TARGET else "not met"),
    ]
    return lines, figures


def main(argv: list[str] | None = None) -> int:
    return section_main("overhead", run, argv)


if __name__ == "__main__":
    sys.exit(main())
