"""What every benchmark shares: the machine's description, interleaved rounds, medians
and Markdown tables.

The machines these numbers come from are shared with other work, so every comparison
is measured side by side in one process: each round runs every contender once, in an
order that rotates from round to round, and the report gives medians over the rounds
and the interquartile range of the per-round ratios. Where torch runs on one thread,
the CPU time of that thread is the measure: unlike the wall clock, it does not count
the time other processes hold the cores.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "ROOT",
    "Rounds",
    "interleave",
    "load_average",
    "machine",
    "median",
    "noise_probe",
    "quartiles",
    "ratio_spread",
    "table",
]

ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float:
    """The one-minute load average (0 where the system does not say)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def machine() -> dict[str, str]:
    """The facts a reader needs to compare these numbers with theirs."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu_model(),
        "cores": str(cores or os.cpu_count()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "os": f"{platform.system()} {platform.release()}",
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass
class Rounds:
    """Per-contender measurements, one per round, in the order of the rounds."""

    samples: dict[str, list[float]]

    def median(self, name: str) -> float:
        return median(self.samples[name])

    def ratios(self, name: str, over: str) -> list[float]:
        """``name``'s value over ``over``'s, round by round (the pairs ran together)."""
        return [a / b for a, b in zip(self.samples[name], self.samples[over])]


def interleave(contenders: Mapping[str, Callable[[], float]], rounds: int) -> Rounds:
    """Run every contender once per round, rotating the order each round; each call
    returns its own measurement (seconds, or a rate)."""
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(contenders[name]())
    return Rounds(samples)


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q1, q2, q3


def ratio_spread(ratios: Sequence[float]) -> str:
    """'1.010 (0.990-1.030)': the median ratio and the interquartile range of the
    rounds' ratios."""
    q1, q2, q3 = quartiles(ratios)
    return f"{q2:.3f} ({q1:.3f}-{q3:.3f})"


def noise_probe(repeats: int = 25) -> str:
    """How steady the machine is now: the same small matrix work repeated, its
    spread (interquartile range over median) by the wall clock and by CPU time."""
    a = torch.randn(256, 256)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(20):
            a @ a
        walls.append(time.perf_counter() - wall)
        cpus.append(time.thread_time() - cpu)

    def spread(values: list[float]) -> float:
        q1, q2, q3 = quartiles(values)
        return (q3 - q1) / q2 * 100

    return (
        f"{spread(walls):.0f}% by the wall clock, {spread(cpus):.0f}% by CPU time "
        f"(slowest / fastest: {max(walls) / min(walls):.1f}x wall, "
        f"{max(cpus) / min(cpus):.1f}x CPU)"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table; numbers right-aligned."""
    align = [
        "---:" if rows and isinstance(rows[0][i], (int, float)) else "---"
        for i in range(len(headers))
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return lines


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def section_main(
    name: str,
    run: Callable[[bool], tuple[list[str], object]],
    argv: list[str] | None,
    *,
    one_thread: bool = True,
) -> int:
    """``python -m bench.NAME [--quick]``: run one section and print its lines."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if one_thread:
        torch.set_num_threads(1)
    lines, _ = run(args.quick)
    print("\n".join(lines))
    return 0
