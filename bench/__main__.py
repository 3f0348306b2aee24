"""``python -m bench [--quick] [--only NAME ...] [--output FILE]``: run the benchmarks
and write BENCHMARKS.md (every table in it comes from this run).

The full run takes about nine minutes on a 2-core CPU machine, ``--quick`` about four
(fewer rounds, and torch.compile of LeNet only). ``--only`` runs some sections and
prints them without writing the file. torch runs on one thread throughout: on a
shared machine, a second thread mostly measures the neighbours.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from . import (
    compile_speed,
    data_path,
    end_to_end,
    meta_build,
    overhead,
    torch_compile,
    train_loop,
    zoo,
)
from .common import ROOT, load_average, machine, noise_probe

SECTIONS: dict[
    str, tuple[str, Callable[[bool], tuple[list[str], dict[str, float]]]]
] = {
    "overhead": ("Generated code overhead", overhead.run),
    "compile": ("Compiler latency and scaling", compile_speed.run),
    "meta": ("Meta build of 10B parameters", meta_build.run),
    "train": ("Training loop", train_loop.run),
    "end_to_end": (
        "What a user waits for: examples/digits.yaml end to end",
        end_to_end.run,
    ),
    "torch_compile": ("torch.compile", torch_compile.run),
    "data": ("Data path: image folder", data_path.run),
    "zoo": ("Model zoo against the references", zoo.run),
}

INTRO = """\
# Benchmarks

Regenerate with `python -m bench` (about nine minutes; `python -m bench --quick` takes
about four, with fewer rounds). Lightning is an optional bench-only dependency:
`pip install -e .[bench]`. Each section can also run alone, e.g.
`python -m bench.compile_speed`; `python -m bench.compile_speed --profile 10000`
prints a cProfile of one 10,000-node compile. The GPU script, `bench/gpu.py`, is not
part of this run (see the last section).

All comparisons are ratios of contenders measured side by side in one process, in
rounds that alternate them, reported as medians (with the interquartile range of the
per-round ratios). torch runs on one thread, and where the work is all on that
thread, the measure is its CPU time: the machine is shared, and the wall clock
counts the time other processes hold the cores.
"""


GPU = """\
## GPU (bench/gpu.py)

`python bench/gpu.py` (on a machine with CUDA; `--quick` for a short run) trains
bench/specs/transformer.yaml (8 layers, 512 wide, 256 tokens, batch 32) and
examples/unet.yaml (3x64x64 as declared, batch 64) on random data in four
configurations: eager float32 (no TF32), eager bf16 autocast, torch.compile float32,
torch.compile with bf16 autocast. With the FLOPs per sample from `Spec.summary()`
(forward and backward, counted on the meta device) it reports steps/s, samples/s,
TFLOP/s, MFU against the GPU's dense bf16 peak (a table of known GPUs, or
`--peak-tflops`) and the speed-up over eager float32, as a Markdown table to paste
here. It is not run by `python -m bench` or in CI. No GPU was available for this
run, so there are no GPU figures yet; `python bench/gpu.py --device cpu --quick
--configs "eager fp32,eager bf16" --batch-scale 0.125` checks the script on a CPU.
"""


def _summary(figures: dict[str, float]) -> list[str]:
    rows = []

    def row(target: str, value: str, ok: bool | None) -> None:
        status = "n/a" if ok is None else ("met" if ok else "not met")
        rows.append(f"| {target} | {value} | {status} |")

    overheads = [v for k, v in figures.items() if k.startswith("overhead ")]
    if overheads:
        worst = max(overheads)
        row(
            "generated / hand-written fwd+bwd <= 1.02",
            f"{worst:.3f} (worst)",
            worst <= 1.02,
        )
    zoos = [
        v for k, v in figures.items() if k.startswith("zoo ") and "compile" not in k
    ]
    if zoos:
        worst = max(zoos)
        row(
            f"zoo model / its reference fwd+bwd <= {zoo.TARGET}",
            f"{worst:.3f} (worst)",
            worst <= zoo.TARGET,
        )
    if "chain_1k_s" in figures:
        row(
            "1,000 nodes <= 0.5 s",
            f"{figures['chain_1k_s']:.3f} s",
            figures["chain_1k_s"] <= 0.5,
        )
        growth = figures["growth_10k_over_1k"]
        row("10k / 1k nodes <= 12", f"{growth:.1f}", growth <= 12)
    metas = [v for k, v in figures.items() if k.startswith("meta ")]
    if metas:
        row("10B parameters on meta <= 3 s", f"{max(metas):.2f} s", max(metas) <= 3)
    for mode in ("eager", "torch.compile"):
        key = f"train {mode}"
        if key in figures:
            row(
                f"bare step, nnspec / hand loop steps/s ({mode}) >= 0.97",
                f"{figures[key]:.3f}",
                figures[key] >= 0.97,
            )
    if "train over lightning" in figures:
        ahead = figures["train over lightning"]
        row("bare step, nnspec / Lightning steps/s > 1", f"{ahead:.2f}", ahead > 1)
    if "fit over hand" in figures:
        fit = figures["fit over hand"]
        row(
            f"whole run, `Trainer.fit()` / hand loop (wall) <= {end_to_end.FIT_TARGET}",
            f"{fit:.3f} wall ({figures['fit cpu over hand']:.3f} CPU)",
            fit <= end_to_end.FIT_TARGET,
        )
    if "startup cpu" in figures:
        startup = figures["startup cpu"]
        row(
            "`nnspec train` start-up beyond torch's (CPU) <= "
            f"{end_to_end.STARTUP_TARGET} s",
            f"{startup:.3f} s CPU ({figures['startup wall']:.3f} s wall)",
            startup <= end_to_end.STARTUP_TARGET,
        )
    compiles = [v for k, v in figures.items() if k.startswith("compile ")]
    fronts = [v for k, v in figures.items() if k.startswith("front end ")]
    if compiles:
        row(
            "torch.compile time, generated / hand-written: equal within noise",
            "inductor "
            + ", ".join(f"{v:.2f}" for v in compiles)
            + "; front end "
            + ", ".join(f"{v:.2f}" for v in fronts),
            None,
        )
    if "recompiles" in figures:
        row(
            "recompiles after warm-up = 0",
            f"{figures['recompiles']:.0f}",
            figures["recompiles"] == 0,
        )
    return ["| target | measured | |", "|---|---|---|", *rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), metavar="NAME")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    facts = machine()
    load_before, noise_before = load_average(), noise_probe()
    began = time.perf_counter()
    sections: list[str] = []
    figures: dict[str, float] = {}
    for name in args.only or SECTIONS:
        title, run = SECTIONS[name]
        print(f"== {title}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        lines, found = run(args.quick)
        figures.update(found)
        seconds = time.perf_counter() - start
        sections += [f"## {title}", "", *lines, "", f"({seconds:.0f} s)", ""]
        print("\n".join(lines), file=sys.stderr, flush=True)
    minutes = (time.perf_counter() - began) / 60
    header = [
        INTRO,
        "## This run",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in facts.items()),
        f"| mode | {'--quick' if args.quick else 'full'}, {minutes:.1f} minutes |",
        f"| load average (1 min) | {load_before:.2f} before, {load_average():.2f} "
        "after, on 2 cores |",
        "| noise: spread of one fixed piece of matrix work, repeated 25 times "
        f"(interquartile range / median) | before: {noise_before}; after: "
        f"{noise_probe()} |",
        "",
        "## Targets",
        "",
        *_summary(figures),
        "",
    ]
    fixes = (ROOT / "bench" / "compile_fixes.md").read_text(encoding="utf-8")
    startup = (ROOT / "bench" / "startup_fixes.md").read_text(encoding="utf-8")
    text = "\n".join([*header, *sections, fixes, startup, GPU])
    if args.only:
        print(text)
        return 0
    args.output.write_text(text.rstrip() + "\n", encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
