"""Where and how the model computes: the device, mixed precision, torch.compile."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from .errors import TrainError

__all__ = [
    "autocast",
    "compile_errors",
    "compile_failure",
    "compile_model",
    "make_scaler",
    "prepare_device",
]


def prepare_device(device: torch.device) -> None:
    """Select a CUDA device and let float32 matmuls and convolutions use TF32."""
    if device.type != "cuda":
        return
    if device.index is not None:
        torch.cuda.set_device(device)
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"  # type: ignore[attr-defined]
    else:  # pragma: no cover - older torch
        matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(
    device: torch.device, precision: str
) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a precision setting; 32-true computes as written."""
    if precision == "32-true":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for float16 only (bfloat16 has float32's range)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")


def compile_model(model: nn.Module, options: dict[str, Any]) -> None:
    """Compile in place (``Module.compile``): the state_dict keys stay unchanged."""
    try:
        model.compile(**options)
    except compile_errors() as exc:
        raise compile_failure(exc, options) from exc


def compile_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean torch.compile failed, rather than the model itself."""
    import torch._dynamo.exc

    errors: list[type[BaseException]] = [torch._dynamo.exc.TorchDynamoException]
    with contextlib.suppress(ImportError):
        from torch._inductor.exc import InductorError

        errors.append(InductorError)
    return tuple(errors)


def compile_failure(exc: BaseException, options: dict[str, Any]) -> TrainError:
    """A TrainError naming the backend and the underlying cause of a compile failure."""
    cause: BaseException = getattr(exc, "inner_exception", None) or exc
    text = str(cause).strip() or type(cause).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    summary = "\n".join(lines[:6])
    return TrainError(
        f"torch.compile (backend {options.get('backend', 'inductor')}) failed: "
        f"{type(cause).__name__}: {summary}\n"
        "train without it with --set compile=false"
    )
