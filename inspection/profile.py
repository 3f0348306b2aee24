"""Profile a model's training steps with torch.profiler.

The steps are plain: a synthetic batch shaped like the spec's inputs, the model's
forward pass, the mean of its outputs as the loss, backward, and an SGD update. The
profiler runs on a wait/warmup/active schedule and writes its trace with
``tensorboard_trace_handler``: a ``*.pt.trace.json`` file that TensorBoard's PyTorch
Profiler tab (the ``profile`` extra) and Perfetto (https://ui.perfetto.dev) both open.

After the profiled steps, the same number of steps run again without the profiler,
and their mean time gives the step time, the samples per second and the achieved
FLOP/s (FLOPs counted on the meta device by the summary). On CUDA the achieved
FLOP/s is also set against the device's peak: the model FLOPs utilisation (MFU).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn as nn
from torch.autograd import DeviceType
from torch.profiler import (
    ProfilerActivity,
    record_function,
    schedule,
    tensorboard_trace_handler,
)

from ..compiler.pipeline import CompiledModel
from ..compiler.values import TensorValue
from .formats import format_bytes, format_count, format_time
from .summary import summarize, tensors_in

__all__ = [
    "PEAK_TFLOPS",
    "OpTime",
    "ProfileReport",
    "ProfiledSpec",
    "matmul_precision",
    "peak_tflops",
    "profile_spec",
    "synthetic_batch",
]

#: Dense peak TFLOP/s of common GPUs by matmul precision (vendor data sheets, no
#: sparsity): (pattern over torch.cuda.get_device_name(), {precision: TFLOP/s}).
#: The first pattern that matches wins, so variants come before their family.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    (r"H100.*PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    (r"H[12]00.*NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (r"\bH[12]00\b", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    (r"\bA100\b", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    (r"\bA10\b", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),
    (r"\bL40S\b", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0, "fp16": 362.0}),
    (r"\bL4\b", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    (r"V100-PCIE", {"fp32": 14.0, "fp16": 112.0}),
    (r"\bV100\b", {"fp32": 15.7, "fp16": 125.0}),
    (r"\bT4\b", {"fp32": 8.1, "fp16": 65.0}),
    (r"RTX 4090", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2}),
    (r"RTX 3090", {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0, "fp16": 71.0}),
)


class ProfiledSpec(Protocol):
    """What the profiler needs of a loaded spec: ``nnspec.Spec`` has it. Taking it
    as a parameter keeps this package below the API that defines ``Spec``."""

    @property
    def name(self) -> str: ...

    @property
    def compiled(self) -> CompiledModel: ...

    def build(
        self, device: torch.device | str | None = ..., dtype: torch.dtype | None = ...
    ) -> nn.Module: ...


# Labels of the parts of a step in the trace.
_PARTS = ("forward", "backward", "optimizer")


@dataclass
class OpTime:
    """One operator's self time, per profiled step."""

    name: str
    self_us: float  # microseconds per step
    share: float  # fraction of all operators' self time
    calls: float  # per step


@dataclass
class ProfileReport:
    """What ``profile_spec`` found."""

    model: str
    device: str
    batch_size: int
    steps: int
    out_dir: Path
    trace: Path | None
    step_time: float  # seconds, mean over unprofiled steps
    samples_per_s: float
    top_ops: list[OpTime]
    time_kind: str  # 'CPU' or 'CUDA': which self time ranks the operators
    flops_per_step: int | None
    tflops: float | None  # achieved
    peak: float | None  # TFLOP/s of the device at this precision
    precision: str | None
    peak_memory: int | None  # bytes, CUDA only
    notes: list[str] = field(default_factory=list)

    @property
    def mfu(self) -> float | None:
        """Model FLOPs utilisation: achieved over peak FLOP/s."""
        if self.tflops is None or not self.peak:
            return None
        return self.tflops / self.peak

    def render(self) -> str:
        out = [
            f"profiled {self.model} on {self.device}: batch {self.batch_size}, "
            f"{self.steps} active steps",
            f"trace              {self.trace or '(none written)'}",
            f"step time          {self.step_time * 1e3:.2f} ms "
            f"(mean of {self.steps} steps without the profiler)",
            f"samples/s          {self.samples_per_s:,.1f}",
        ]
        if self.flops_per_step is not None and self.tflops is not None:
            out.append(
                f"FLOPs per step     {format_count(self.flops_per_step)} "
                "(forward+backward, counted on the meta device)"
            )
            rate = (
                f"{self.tflops:.3g} TFLOP/s"
                if self.tflops >= 0.1
                else f"{self.tflops * 1e3:.3g} GFLOP/s"
            )
            out.append(f"achieved           {rate}")
        if self.mfu is not None:
            out.append(
                f"MFU                {self.mfu:.1%} of {self.peak:g} TFLOP/s "
                f"({self.precision} dense peak)"
            )
        if self.peak_memory is not None:
            out.append(f"peak memory        {format_bytes(self.peak_memory)} allocated")
        out += [f"note: {n}" for n in self.notes]
        out.append(f"top operators by self {self.time_kind} time, per step:")
        width = max([len(o.name) for o in self.top_ops] + [8])
        out.append(
            f"  {'operator'.ljust(width)}  {'self time':>10}  {'share':>6}  calls"
        )
        for op in self.top_ops:
            out.append(
                f"  {op.name.ljust(width)}  {format_time(op.self_us):>10}  "
                f"{op.share:>6.1%}  {op.calls:g}"
            )
        out.append(
            f"open the trace: tensorboard --logdir {self.out_dir} (PyTorch Profiler tab), "
            "or load the .pt.trace.json file at https://ui.perfetto.dev"
        )
        return "\n".join(out)


# -- peaks ---------------------------------------------------------------------------


def matmul_precision(dtype: torch.dtype) -> str:
    """The precision matrix multiplications run at for parameters of ``dtype`` on CUDA."""
    if dtype == torch.bfloat16:
        return "bf16"
    if dtype == torch.float16:
        return "fp16"
    if torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return "fp32"


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The dense peak TFLOP/s of a GPU by its name, or None when not known."""
    for pattern, peaks in PEAK_TFLOPS:
        if re.search(pattern, device_name):
            return peaks.get(precision)
    return None


# -- steps ---------------------------------------------------------------------------


def synthetic_batch(
    spec: ProfiledSpec,
    model: nn.Module,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> list[torch.Tensor]:
    """Random inputs shaped like the spec's; integer inputs stay below the smallest
    embedding table, so that they index it."""
    sizes = [
        m.num_embeddings
        for m in model.modules()
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag))
    ]
    high = min(sizes) if sizes else 2
    batch = []
    for value in spec.compiled.model.input_values:
        assert isinstance(value, TensorValue)
        shape = (batch_size, *value.shape[1:])
        if value.dtype.is_floating_point:
            tensor = torch.randn(shape, device=device, dtype=dtype or value.dtype)
        elif value.dtype == torch.bool:
            tensor = torch.randint(0, 2, shape, device=device).bool()
        else:
            tensor = torch.randint(0, high, shape, device=device, dtype=value.dtype)
        batch.append(tensor)
    return batch


class _Trainer:
    """One training step: forward, mean of the outputs as the loss, backward, SGD."""

    def __init__(self, model: nn.Module, batch: list[torch.Tensor]) -> None:
        self.model = model
        self.batch = batch
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=1e-4) if params else None

    def step(self) -> None:
        with record_function("forward"):
            outputs = [
                t for t in tensors_in(self.model(*self.batch)) if t.is_floating_point()
            ]
        if not outputs:
            raise ValueError("the model returns no floating-point tensor to train on")
        loss = torch.stack([t.float().mean() for t in outputs]).sum()
        if self.optimizer is None or not loss.requires_grad:
            return
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_spec(
    spec: ProfiledSpec,
    *,
    steps: int = 5,
    out_dir: str | Path | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    wait: int = 1,
    warmup: int = 1,
    top: int = 10,
    peak: float | None = None,
) -> ProfileReport:
    """Profile ``wait + warmup + steps`` training steps of ``spec``'s model and write
    the trace to ``out_dir`` (default ``runs/profile/<model name>``). ``peak`` is the
    device's peak TFLOP/s for the MFU, when the built-in table does not know it."""
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be at least 1")
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out_dir) if out_dir is not None else Path("runs/profile") / spec.name
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(spec.compiled, spec.build(device="meta", dtype=dtype))
    flops = summary.totals.flops_forward_backward
    model = spec.build(device=target, dtype=dtype)
    model.train()
    trainer = _Trainer(model, synthetic_batch(spec, model, batch_size, target, dtype))
    cuda = target.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    started = time.time()
    with torch.profiler.profile(
        activities=activities,
        schedule=schedule(wait=wait, warmup=warmup, active=steps, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(out)),
        record_shapes=True,
        profile_memory=True,
        with_flops=True,
    ) as prof:
        for _ in range(wait + warmup + steps):
            trainer.step()
            prof.step()
    top_ops = _top_ops(prof, steps, top, cuda)

    if cuda:
        torch.cuda.reset_peak_memory_stats(target)
    _sync(target)
    begin = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    _sync(target)
    step_time = (time.perf_counter() - begin) / steps

    notes = []
    if spec.compiled.spec.train is not None:
        notes.append(
            "the loss is the mean of the outputs; the spec's train section is not read"
        )
    per_step = flops * batch_size if flops is not None else None
    achieved = per_step / step_time / 1e12 if per_step is not None else None
    name, precision, device_peak, memory = str(target), None, peak, None
    if cuda:
        name = f"{target} ({torch.cuda.get_device_name(target)})"
        param = next(model.parameters(), None)
        precision = matmul_precision(
            param.dtype if param is not None else torch.float32
        )
        if device_peak is None:
            device_peak = peak_tflops(torch.cuda.get_device_name(target), precision)
            if device_peak is None:
                notes.append(
                    "no peak TFLOP/s known for this device; give --peak-tflops for MFU"
                )
        memory = torch.cuda.max_memory_allocated(target)
    return ProfileReport(
        model=spec.name,
        device=name,
        batch_size=batch_size,
        steps=steps,
        out_dir=out,
        trace=_newest_trace(out, started),
        step_time=step_time,
        samples_per_s=batch_size / step_time,
        top_ops=top_ops,
        time_kind="CUDA" if cuda else "CPU",
        flops_per_step=per_step,
        tflops=achieved,
        peak=device_peak if cuda else None,
        precision=precision,
        peak_memory=memory,
        notes=notes,
    )


def _top_ops(prof: Any, steps: int, top: int, cuda: bool) -> list[OpTime]:
    """Operators ranked by self time: CPU time, or on CUDA the time of the kernels each
    launched, as a share of all kernels' time."""
    events = list(prof.key_averages())
    ops = [
        e
        for e in events
        if e.device_type == DeviceType.CPU
        and not e.is_user_annotation
        and not e.key.startswith("ProfilerStep")
        and e.key not in _PARTS
    ]
    if cuda:
        attr = "self_device_time_total"
        kernels = [e for e in events if e.device_type == DeviceType.CUDA]
        total = sum(e.self_device_time_total for e in kernels)
    else:
        attr = "self_cpu_time_total"
        total = sum(e.self_cpu_time_total for e in ops)
    ranked = sorted(ops, key=lambda e: getattr(e, attr), reverse=True)[:top]
    return [
        OpTime(
            e.key,
            getattr(e, attr) / steps,
            getattr(e, attr) / (total or 1.0),
            e.count / steps,
        )
        for e in ranked
        if getattr(e, attr) > 0
    ]


def _newest_trace(out: Path, since: float) -> Path | None:
    found = [p for p in out.glob("*.pt.trace.json") if p.stat().st_mtime >= since - 1]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None
