"""torch.compile (inductor) of generated modules against their hand-written twins.

For each model, a round compiles the generated module and the hand-written one, in
turn, from a clean state (dynamo reset, inductor's and AOTAutograd's caches off), and
times the first training step (forward, backward), which is where compilation
happens, and the first evaluation forward. After that warm-up, training steps and
evaluation forwards alternate on new data of the same shape: any frame compiled then
is a recompile.

    python -m bench.torch_compile [--quick]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch
import torch._dynamo
import torch._functorch.config
import torch._inductor.config
from torch import nn
from torch._dynamo.utils import counters
from torch._inductor.utils import fresh_cache

from .common import interleave, median, ratio_spread, section_main, table
from .overhead import CASES, Case, _pair

__all__ = ["compile_once", "run"]

STEADY_STEPS = 10


def _frames() -> int:
    return int(counters["frames"]["total"])


def compile_once(
    model: nn.Module, shape: tuple[int, ...], backend: str = "inductor"
) -> dict[str, float]:
    """Compile time (first train step + first eval forward), graphs, graph breaks,
    and frames compiled after that warm-up."""
    with fresh_cache():  # no kernels compiled by an earlier run, on disk or in memory
        return _compile_once(model, shape, backend)


def captured_nodes(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Nodes of the FX graphs dynamo captures from the model's forward."""
    nodes = 0

    def count(gm: torch.fx.GraphModule, inputs: list) -> Callable:
        nonlocal nodes
        nodes += len(gm.graph.nodes)
        return gm.forward

    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(model, backend=count)(torch.randn(shape))
    torch._dynamo.reset()
    return nodes


def _compile_once(
    model: nn.Module, shape: tuple[int, ...], backend: str = "inductor"
) -> dict[str, float]:
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend=backend)
    x = torch.randn(shape)
    model.train()
    start, cpu = time.perf_counter(), time.thread_time()
    compiled(x).float().mean().backward()
    model.eval()
    with torch.no_grad():
        compiled(x)
    seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu
    graphs = int(counters["stats"]["unique_graphs"])
    breaks = sum(counters["graph_break"].values())
    warm = _frames()
    for _ in range(STEADY_STEPS):
        model.train()
        model.zero_grad(set_to_none=True)
        compiled(torch.randn(shape)).float().mean().backward()
        model.eval()
        with torch.no_grad():
            compiled(torch.randn(shape))
    return {
        "seconds": seconds,
        "cpu": cpu,
        "graphs": graphs,
        "breaks": breaks,
        "recompiles": _frames() - warm,
    }


def run(quick: bool = False) -> tuple[list[str], dict[str, float]]:
    torch._inductor.config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False
    lenet, _, mlp = CASES
    # The first compile in a process also imports and sets up inductor.
    compile_once(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), (2, 4))
    names = [lenet] if quick else [lenet, mlp]
    rounds = 1 if quick else 3
    front_rounds = 5 if quick else 11
    rows, figures = [], {}
    recompiles = 0
    for name in names:
        case: Case = CASES[name]
        generated, hand = _pair(case)
        found: dict[str, list[dict[str, float]]] = {"generated": [], "hand": []}

        def contender(
            label: str,
            model: nn.Module,
            shape: tuple[int, ...] = case.input_shape,
            found: dict[str, list[dict[str, float]]] = found,
        ) -> Callable[[], float]:
            def measure() -> float:
                result = compile_once(model, shape)
                found[label].append(result)
                return result["seconds"]

            return measure

        result = interleave(
            {
                "generated": contender("generated", generated),
                "hand": contender("hand", hand),
            },
            rounds,
        )
        front = interleave(
            {
                label: (
                    lambda model=model, shape=case.input_shape: compile_once(
                        model, shape, "aot_eager"
                    )["cpu"]
                )
                for label, model in (("generated", generated), ("hand", hand))
            },
            front_rounds,
        )
        ratios = result.ratios("generated", "hand")
        front_ratios = front.ratios("generated", "hand")
        figures[f"compile {name}"] = median(ratios)
        figures[f"front end {name}"] = median(front_ratios)
        for label, model in (("generated", generated), ("hand", hand)):
            runs = found[label]
            recompiles += sum(r["recompiles"] for r in runs)
            first = label == "generated"
            rows.append(
                [
                    name if first else "",
                    "generated" if first else "hand-written",
                    result.median(label),
                    ratio_spread(ratios) if first else "",
                    front.median(label),
                    ratio_spread(front_ratios) if first else "",
                    captured_nodes(model, case.input_shape),
                    max(r["graphs"] for r in runs),
                    max(r["breaks"] for r in runs),
                    max(r["recompiles"] for r in runs),
                ]
            )
    torch._dynamo.reset()
    figures["recompiles"] = recompiles
    lines = [
        f"Inductor on the CPU, {rounds} interleaved round(s) per model, each compile "
        "with empty caches (after one compile of a small model that sets inductor up); "
        "compile time is the wall time of the first training step and the first "
        f"evaluation forward; then {STEADY_STEPS} training steps and {STEADY_STEPS} "
        "evaluation forwards on new data. The front end is the same with backend "
        f"aot_eager (dynamo and AOTAutograd, no code generation), {front_rounds} "
        "rounds, in CPU seconds of the compiling thread: it is where the two modules "
        "differ (the generated one calls a module where the hand-written one calls a "
        "function); inductor then compiles "
        "the same graph. `FX nodes`: the size of the graph dynamo captures.",
        "",
        *table(
            [
                "model",
                "module",
                "inductor compile (s)",
                "generated / hand-written",
                "front end (CPU s)",
                "generated / hand-written",
                "FX nodes",
                "graphs",
                "graph breaks",
                "recompiles after warm-up",
            ],
            rows,
        ),
        "",
        f"- recompiles after warm-up, all runs: {recompiles} (target 0): "
        + ("met" if recompiles == 0 else "not met"),
    ]
    return lines, figures


def main(argv: list[str] | None = None) -> int:
    return section_main("torch_compile", run, argv)


if __name__ == "__main__":
    sys.exit(main())
