"""How long ``Spec.summary()`` takes, nothing allocated: the U-Net and a 10B-parameter
stack of Linear layers. Run: python bench/summary_speed.py (results: bench/summary_speed.md).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path

import nnspec

ROOT = Path(__file__).resolve().parent.parent
HUGE = """\
nnspec: 1
name: Huge
inputs: {x: [50000]}
layers:
  - {op: Linear, name: layers, out_features: 50000, repeat: 4}
"""


def timed(label: str, load: Callable[[], nnspec.Spec]) -> None:
    start = time.perf_counter()
    spec = load()
    compiled = time.perf_counter()
    summary = spec.summary()
    done = time.perf_counter()
    print(
        f"{label:<28} {summary.totals.params:>16,} params  "
        f"compile {compiled - start:6.2f} s  summary {done - compiled:6.2f} s"
    )


def main() -> None:
    nnspec.loads("nnspec: 1\nname: Warm\ninputs: {x: [2]}\nlayers: [ReLU]\n").summary()
    timed("examples/unet.yaml", lambda: nnspec.load(ROOT / "examples" / "unet.yaml"))
    timed("4 x Linear(50000, 50000)", lambda: nnspec.loads(HUGE))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of the process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
