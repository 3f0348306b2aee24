"""Compiler latency, stage by stage: spec text -> built module.

Chains of 100, 1,000 and 10,000 nodes (Linear(64, 64) and ReLU, alternating) and
examples/unet.yaml go through every stage in each round:

    load      YAML text -> positioned data (and any ``extends`` chain)
    validate  JSON Schema and pydantic
    resolve   params and graph templates (names, ops, references)
    shapes    the walk that infers every shape and constructor argument
    codegen   classes, init rules and the Python source
    build     the source compiled and executed, and the model constructed on the CPU

    python -m bench.compile_speed [--quick]            # the table
    python -m bench.compile_speed --profile 10000      # cProfile of one compile
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from collections.abc import Callable
from functools import partial

from torch import nn

from nnspec.api import Spec
from nnspec.compiler import compile_document
from nnspec.spec import parse_yaml
from nnspec.spec.derive import derive, read_spec_file
from tests.compiler import handwritten as examples

from .common import ROOT, interleave, median, table

__all__ = ["STAGES", "chain_spec", "compile_stages", "run"]

STAGES = ("load", "validate", "resolve", "shapes", "codegen", "build")
SIZES = (100, 1_000, 10_000)


def chain_spec(nodes: int) -> str:
    """A spec of ``nodes`` nodes: Linear(64, 64) and ReLU, alternating."""
    lines = ["nnspec: 1", f"name: Chain{nodes}", "inputs: {x: [64]}", "layers:"]
    lines += ["  - {op: Linear, out_features: 64}\n  - ReLU" for _ in range(nodes // 2)]
    return "\n".join(lines) + "\n"


def _forget_generated() -> None:
    """Drop generated modules, so that each build compiles and executes its source."""
    for name in [n for n in sys.modules if n.startswith("nnspec_generated_")]:
        del sys.modules[name]


class _CollectorClock:
    """Seconds the cyclic garbage collector ran, while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began

    def __enter__(self) -> _CollectorClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def compile_stages(text: str, path: str) -> dict[str, float]:
    """Seconds per stage for one spec, text to built module; also the total in CPU
    seconds of this thread, and the seconds the garbage collector ran."""
    _forget_generated()
    with _CollectorClock() as collector:
        cpu = time.thread_time()
        start = time.perf_counter()
        document = derive(parse_yaml(text, path), read_spec_file)
        loaded = time.perf_counter()
        compiled = compile_document(document)
        compiled_at = time.perf_counter()
        Spec(compiled).build()
        built = time.perf_counter()
        cpu = time.thread_time() - cpu
    seconds = {"load": loaded - start, **compiled.stage_seconds}
    seconds["build"] = built - compiled_at
    seconds["collector"] = collector.seconds
    seconds["total"] = built - start
    seconds["cpu"] = cpu
    return seconds


def _chain_by_hand(nodes: int) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(nodes // 2):
        layers += [nn.Linear(64, 64), nn.ReLU()]
    return nn.Sequential(*layers)


def _hand_seconds(make: Callable[[], nn.Module]) -> float:
    start = time.perf_counter()
    make()
    return time.perf_counter() - start


def _cases() -> dict[str, tuple[str, str, Callable[[], nn.Module]]]:
    cases = {
        f"chain of {n:,}": (chain_spec(n), f"chain{n}.yaml", partial(_chain_by_hand, n))
        for n in SIZES
    }
    unet = ROOT / "examples" / "unet.yaml"
    cases["examples/unet.yaml"] = (unet.read_text(), str(unet), examples.UNet)
    return cases


def run(quick: bool = False) -> tuple[list[str], dict[str, float]]:
    """Markdown lines for BENCHMARKS.md, and the headline figures."""
    cases = _cases()
    compile_stages(chain_spec(10), "warm.yaml")  # imports, caches of torch's signatures
    rounds = 3 if quick else 7
    results: dict[str, list[dict[str, float]]] = {name: [] for name in cases}

    def contender(name: str) -> Callable[[], float]:
        text, path, by_hand = cases[name]

        def measure() -> float:
            seconds = compile_stages(text, path)
            seconds["by hand"] = _hand_seconds(by_hand)
            results[name].append(seconds)
            return seconds["total"]

        return measure

    interleave({name: contender(name) for name in cases}, rounds)
    columns = [*STAGES, "collector", "total", "cpu", "by hand"]
    rows = []
    for name, samples in results.items():
        rows.append([name, *(median([s[c] for s in samples]) for c in columns)])
    total = {name: median([s["total"] for s in results[name]]) for name in results}
    cpu = {name: median([s["cpu"] for s in results[name]]) for name in results}
    thousand, ten_thousand = total["chain of 1,000"], total["chain of 10,000"]
    growth = ten_thousand / thousand
    cpu_growth = cpu["chain of 10,000"] / cpu["chain of 1,000"]
    figures = {
        "chain_1k_s": thousand,
        "chain_10k_s": ten_thousand,
        "growth_10k_over_1k": growth,
        "cpu_growth_10k_over_1k": cpu_growth,
    }
    lines = [
        f"Median seconds of {rounds} interleaved rounds, text to a model built on the "
        "CPU. Each column is the median of its own rounds, so the stages need not add "
        "up to the total exactly. `collector`: time the cyclic garbage collector ran "
        "within the total (the compile and the build pause it; it catches up after "
        "them). `cpu`: the total in CPU seconds of the compiling thread, which other "
        "processes on the machine do not inflate. `by hand`: constructing the "
        "hand-written equivalent (an `nn.Sequential` of the same layers; the U-Net of "
        "tests/compiler/handwritten.py), the floor for the build stage.",
        "",
        *table(["spec", *columns], rows),
        "",
        f"- 1,000 nodes: {thousand:.3f} s (target <= 0.5 s): "
        + ("met" if thousand <= 0.5 else "not met"),
        f"- growth, 10,000 over 1,000 nodes: {growth:.1f} wall, {cpu_growth:.1f} CPU "
        "(target <= 12; linear would be 10): " + ("met" if growth <= 12 else "not met"),
    ]
    return lines, figures


def profile(nodes: int, top: int = 30) -> None:
    """cProfile of one compile of a chain, after a warm-up compile."""
    text = chain_spec(nodes)
    compile_stages(chain_spec(10), "warm.yaml")
    profiler = cProfile.Profile()
    profiler.enable()
    compile_stages(text, f"chain{nodes}.yaml")
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compile_speed")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", type=int, metavar="NODES")
    args = parser.parse_args(argv)
    if args.profile:
        profile(args.profile)
        return 0
    lines, _ = run(args.quick)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
