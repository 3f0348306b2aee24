"""10B-parameter specs on the meta device: text to module, and the summary.

Two specs of about ten billion parameters: bench/specs/transformer.yaml with params
for a 32-layer, 5120-wide model, and four Linear(50000, 50000) layers. Each round
compiles the spec from its text, builds it on the meta device (no memory is
allocated for parameters) and takes ``Spec.summary()``, which runs one forward on
meta tensors. Peak resident memory shows that nothing was allocated.

    python -m bench.meta_build [--quick]
"""

from __future__ import annotations

import resource
import sys
import time

import nnspec

from .common import ROOT, interleave, median, section_main, table

__all__ = ["SPECS", "run"]

TARGET_SECONDS = 3.0
TRANSFORMER_10B = {"vocab": 32000, "d_model": 5120, "heads": 40, "layers": 32}
LINEAR_10B = """\
nnspec: 1
name: Huge
inputs: {x: [50000]}
layers:
  - {op: Linear, name: layers, out_features: 50000, repeat: 4}
"""
SPECS = {
    "transformer.yaml, 32 x 5120 wide": (
        (ROOT / "bench" / "specs" / "transformer.yaml").read_text(),
        str(ROOT / "bench" / "specs" / "transformer.yaml"),
        TRANSFORMER_10B,
    ),
    "4 x Linear(50000, 50000)": (LINEAR_10B, "huge.yaml", None),
}


def _measure(text: str, path: str, params: dict | None, out: dict) -> float:
    start = time.perf_counter()
    spec = nnspec.loads(text, params, path=path)
    model = spec.build(device="meta")
    built = time.perf_counter()
    summary = spec.summary()
    done = time.perf_counter()
    out.setdefault("build", []).append(built - start)
    out.setdefault("summary", []).append(done - built)
    out["params"] = sum(p.numel() for p in model.parameters())
    out["summary params"] = summary.totals.params
    return built - start


def run(quick: bool = False) -> tuple[list[str], dict[str, float]]:
    rounds = 3 if quick else 7
    # The first summary in a process also imports the profiling machinery (~1.5 s).
    nnspec.loads("nnspec: 1\nname: Warm\ninputs: {x: [2]}\nlayers: [ReLU]\n").summary()
    found: dict[str, dict] = {name: {} for name in SPECS}
    interleave(
        {
            name: (lambda name=name: _measure(*SPECS[name], found[name]))
            for name in SPECS
        },
        rounds,
    )
    rows, figures, worst = [], {}, 0.0
    for name, out in found.items():
        build = median(out["build"])
        worst = max(worst, build, out["build"][0])
        figures[f"meta {name}"] = build
        rows.append(
            [name, out["params"], out["build"][0], build, median(out["summary"])]
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        f"Median seconds of {rounds} interleaved rounds, and the first round alone: "
        "the first compile in a process builds each kind of layer on the meta device "
        "once, later ones find it cached.",
        "",
        *table(
            [
                "spec",
                "parameters",
                "text to meta module, first (s)",
                "text to meta module, median (s)",
                "summary (s)",
            ],
            rows,
        ),
        "",
        f"- slowest: {worst:.2f} s (target <= {TARGET_SECONDS:.0f} s): "
        + ("met" if worst <= TARGET_SECONDS else "not met"),
        f"- peak resident memory of the benchmark process so far: {peak:,.0f} MiB, "
        "while 10B float32 parameters would take 37 GiB",
    ]
    return lines, figures


def main(argv: list[str] | None = None) -> int:
    return section_main("meta_build", run, argv, one_thread=False)


if __name__ == "__main__":
    sys.exit(main())
