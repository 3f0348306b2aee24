"""Training throughput and MFU on a GPU: eager float32 against bf16 autocast and
torch.compile, for a transformer-style spec and the U-Net.

    python bench/gpu.py                      # on a machine with CUDA
    python bench/gpu.py --quick              # fewer steps
    python bench/gpu.py --peak-tflops 989    # a GPU the table below does not know

Not part of ``python -m bench`` or CI. For each model and configuration it builds the
model from its spec, trains it on random data of the declared shapes (AdamW,
cross-entropy) for some warm-up steps (where torch.compile compiles), then times the
next steps between two device synchronisations. FLOPs per sample come from
``Spec.summary()`` (forward and backward, counted on the meta device at the declared
input shapes); TFLOP/s is that times samples per second, and MFU that over the GPU's
dense bf16 peak. Float32 runs use full float32 matmuls (no TF32), the baseline the
others are compared with. ``--device cpu`` runs the same code on the CPU, to check
the script without a GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch._dynamo
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import nnspec  # noqa: E402

__all__ = ["CONFIGS", "MODELS", "main"]

#: Dense bf16 tensor-core peak, TFLOP/s, by a name found in the device's name.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,  # the other H100 names: the lower figure
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
}


@dataclass
class Model:
    spec: str  # relative to the repository root
    batch: int
    data: Callable[[nnspec.Spec, int, torch.device], tuple[torch.Tensor, torch.Tensor]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _tokens(
    spec: nnspec.Spec, batch: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    vocab, seq = spec.params["vocab"], 256
    tokens = torch.randint(0, vocab, (batch, seq), device=device)
    return tokens, torch.roll(tokens, -1, dims=1)  # next-token targets


def _images(
    spec: nnspec.Spec, batch: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(batch, 3, 64, 64, device=device)
    return images, torch.randint(
        0, spec.params["classes"], (batch, 64, 64), device=device
    )


def _sequence_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out.flatten(0, 1).float(), target.flatten())


def _pixel_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out.float(), target)


MODELS = {
    "transformer.yaml (8 x 512, 256 tokens)": Model(
        "bench/specs/transformer.yaml", 32, _tokens, _sequence_loss
    ),
    "unet.yaml (3x64x64)": Model("examples/unet.yaml", 64, _images, _pixel_loss),
}
#: name -> (torch.compile, bf16 autocast)
CONFIGS = {
    "eager fp32": (False, False),
    "eager bf16": (False, True),
    "compile fp32": (True, False),
    "compile bf16": (True, True),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_per_second(
    model_info: Model,
    spec: nnspec.Spec,
    device: torch.device,
    compile: bool,
    bf16: bool,
    warmup: int,
    steps: int,
    batch: int,
) -> float:
    torch.manual_seed(0)
    model = spec.build(device=device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    forward = torch.compile(model) if compile else model
    x, y = model_info.data(spec, batch, device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model_info.loss(forward(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps / (time.perf_counter() - start)


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given is not None:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16_TFLOPS.items():
        if key in name:
            return peak
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/gpu.py", description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the GPU")
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help="comma-separated, of: " + ", ".join(CONFIGS),
    )
    parser.add_argument(
        "--batch-scale", type=float, default=1.0, help="times each batch"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a machine with a GPU (or --device cpu)")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32
    torch.backends.cudnn.allow_tf32 = False
    warmup, steps = (3, 10) if args.quick else (10, 50)
    configs = [c.strip() for c in args.configs.split(",")]
    peak = peak_tflops(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}, peak bf16 {peak or 'unknown'} TFLOP/s")
    print()
    print(
        "| model | configuration | batch | steps/s | samples/s | TFLOP/s | MFU "
        "| speed-up over eager fp32 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, model_info in MODELS.items():
        spec = nnspec.load(ROOT / model_info.spec)
        totals = spec.summary().totals
        per_sample = totals.flops_forward_backward or 3 * totals.flops_forward
        batch = max(1, round(model_info.batch * args.batch_scale))
        baseline = None
        for config in configs:
            compile, bf16 = CONFIGS[config]
            rate = steps_per_second(
                model_info, spec, device, compile, bf16, warmup, steps, batch
            )
            baseline = baseline or (rate if config == "eager fp32" else None)
            tflops = rate * batch * per_sample / 1e12
            mfu = f"{tflops / peak:.1%}" if peak else "n/a"
            speedup = f"{rate / baseline:.2f}" if baseline else "n/a"
            print(
                f"| {label} | {config} | {batch} | {rate:.2f} | {rate * batch:,.0f} "
                f"| {tflops:.1f} | {mfu} | {speedup} |",
                flush=True,
            )
            torch._dynamo.reset()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
