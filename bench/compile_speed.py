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
import pstats
import sys
import time

from nnspec.api import Spec
from nnspec.compiler import compile_document
from nnspec.spec import parse_yaml
from nnspec.spec.derive import derive, read_spec_file

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


def compile_stages(text: str, path: str) -> dict[str, float]:
    """Seconds per stage for one spec, text to built module."""
    _forget_generated()
    start = time.perf_counter()
    document = derive(parse_yaml(text, path), read_spec_file)
    loaded = time.perf_counter()
    compiled = compile_document(document)
    compiled_at = time.perf_counter()
    Spec(compiled).build()
    built = time.perf_counter()
    seconds = {"load": loaded - start, **compiled.stage_seconds}
    seconds["build"] = built - compiled_at
    seconds["total"] = built - start
    return seconds


def _cases() -> dict[str, tuple[str, str]]:
    cases = {f"chain of {n:,}": (chain_spec(n), f"chain{n}.yaml") for n in SIZES}
    unet = ROOT / "examples" / "unet.yaml"
    cases["examples/unet.yaml"] = (unet.read_text(), str(unet))
    return cases


def run(quick: bool = False) -> tuple[list[str], dict[str, float]]:
    """Markdown lines for BENCHMARKS.md, and the headline figures."""
    cases = _cases()
    compile_stages(chain_spec(10), "warm.yaml")  # imports, caches of torch's signatures
    rounds = 3 if quick else 7
    results: dict[str, list[dict[str, float]]] = {name: [] for name in cases}

    def contender(name: str):
        def measure() -> float:
            seconds = compile_stages(*cases[name])
            results[name].append(seconds)
            return seconds["total"]

        return measure

    interleave({name: contender(name) for name in cases}, rounds)
    rows = []
    for name, samples in results.items():
        stages = [median([s[stage] for s in samples]) for stage in STAGES]
        total = median([s["total"] for s in samples])
        rows.append([name, *stages, total])
    totals = {name: median([s["total"] for s in results[name]]) for name in results}
    thousand, ten_thousand = totals["chain of 1,000"], totals["chain of 10,000"]
    figures = {
        "chain_1k_s": thousand,
        "chain_10k_s": ten_thousand,
        "growth_10k_over_1k": ten_thousand / thousand,
    }
    lines = [
        f"Median seconds of {rounds} interleaved rounds; each stage is the median of "
        "its own rounds, so the stages need not add up to the total exactly.",
        "",
        *table(["spec", *STAGES, "total"], rows),
        "",
        f"- 1,000 nodes: {thousand:.3f} s (target <= 0.5 s)",
        f"- growth, 10,000 over 1,000 nodes: {ten_thousand / thousand:.1f} "
        "(target <= 12; linear would be 10)",
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
