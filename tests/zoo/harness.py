"""Checks that a module built from a spec is a drop-in replacement for a reference module.

A zoo test randomises the reference, then asks: the same state_dict keys with the same
shapes (:func:`assert_same_keys`), the same outputs once the reference's state_dict is
loaded strictly (:func:`assert_same_outputs`), and the same loss and gradients in train mode
with dropout drawing alike (:func:`assert_same_train_step`)::

    ref = references.REFERENCES["resnet18"].small()
    randomise(ref, seed=0)
    assert_same_outputs(ours, ref, torch.randn(2, 3, 32, 32))

or all of it at once, :func:`assert_drop_in`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "assert_drop_in",
    "assert_same_keys",
    "assert_same_outputs",
    "assert_same_train_step",
    "key_diff",
    "primary",
    "primary_square_loss",
    "randomise",
]

# BatchNorm's buffers: randomised with the parameters, since a freshly built BatchNorm's
# statistics (mean 0, variance 1) would hide a mean and variance read the wrong way round.
_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def key_diff(ours: nn.Module, ref: nn.Module) -> list[str]:
    """What differs between the state_dicts' keys, shapes and dtypes, one line each."""
    mine, theirs = ours.state_dict(), ref.state_dict()
    lines = [
        f"missing (in the reference, not ours): {key}"
        for key in theirs
        if key not in mine
    ]
    lines += [
        f"unexpected (ours, not in the reference): {key}"
        for key in mine
        if key not in theirs
    ]
    for key, tensor in mine.items():
        other = theirs.get(key)
        if other is None:
            continue
        if tensor.shape != other.shape:
            lines.append(
                f"mis-shaped: {key}: ours {_shape(tensor)}, reference {_shape(other)}"
            )
        elif tensor.dtype != other.dtype:
            lines.append(
                f"mis-typed: {key}: ours {tensor.dtype}, reference {other.dtype}"
            )
    return lines


def assert_same_keys(ours: nn.Module, ref: nn.Module) -> None:
    """The state_dicts have the same keys (in any order), shapes and dtypes."""
    lines = key_diff(ours, ref)
    if lines:
        shown = "\n  ".join(lines[:40])
        more = f"\n  ... and {len(lines) - 40} more" if len(lines) > 40 else ""
        raise AssertionError(
            f"state_dicts differ in {len(lines)} entries:\n  {shown}{more}"
        )


def _fan_in(tensor: torch.Tensor) -> int:
    # Leading ones do not count: ViT's pos_embedding (1, 197, 768) is 197 vectors of 768.
    shape = list(tensor.shape)
    while len(shape) > 1 and shape[0] == 1:
        shape.pop(0)
    return max(1, math.prod(shape[1:]) if len(shape) > 1 else shape[0])


@torch.no_grad()
def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Give every parameter and BatchNorm statistic a random value drawn from ``seed``.

    Weights (two or more dimensions) are drawn from N(0, 1/fan_in), fan_in the product of
    the dimensions after the first (leading ones skipped), so that activations keep their
    scale through a deep network; one-dimensional ``weight`` parameters (the
    scales of the norm layers, built as ones) from U(0.5, 1.5); every other parameter
    (biases, built as zeros or constants) from N(0, 0.1^2). Running means are drawn from
    N(0, 0.1^2), running variances from U(0.5, 1.5), and ``num_batches_tracked`` from
    1..1000. Tied parameters stay tied; other buffers (masks, position ids) are left alone.
    Returns the module.
    """
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        leaf = name.rpartition(".")[2]
        if tensor.is_meta:
            raise ValueError(
                f"cannot randomise {name}: the module is on the meta device"
            )
        if isinstance(tensor, nn.Parameter):
            if tensor.dim() >= 2:
                std = _fan_in(tensor) ** -0.5
                value = torch.randn(tensor.shape, generator=generator) * std
            elif leaf == "weight":
                value = torch.rand(tensor.shape, generator=generator) + 0.5
            else:
                value = torch.randn(tensor.shape, generator=generator) * 0.1
        elif leaf == "running_mean":
            value = torch.randn(tensor.shape, generator=generator) * 0.1
        elif leaf == "running_var":
            value = torch.rand(tensor.shape, generator=generator) + 0.5
        elif leaf == "num_batches_tracked":
            value = torch.randint(1, 1001, tensor.shape, generator=generator)
        else:
            continue
        tensor.copy_(value)
    return module


def primary(output: Any) -> torch.Tensor:
    """The main tensor of an output: itself, a tuple's or ModelOutput's first, a dict's first."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        return primary(next(iter(output.values())))
    if isinstance(output, Sequence):
        return primary(output[0])
    raise TypeError(f"no tensor in an output of type {type(output).__name__}")


def _flatten(
    output: Any, ref: Any, where: str
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Pairs (where, ours, reference) of the tensors to compare.

    A mapping of ours (dict, ModelOutput) is compared key by key with the reference's, which
    may have more keys (a ModelOutput's cache); a tensor of ours against a mapping or tuple
    of the reference's compares with its first entry, as ``outputs[0]`` reads a ModelOutput.
    """
    if isinstance(output, torch.Tensor):
        if isinstance(ref, torch.Tensor):
            return [(where or "output", output, ref)]
        return _flatten(output, primary(ref), where)
    if isinstance(output, Mapping):
        if not isinstance(ref, Mapping):
            raise AssertionError(
                f"{where or 'output'}: ours is a mapping, the reference's a {type(ref).__name__}"
            )
        pairs = []
        for key, value in output.items():
            if key not in ref:
                raise AssertionError(
                    f"{where}{key}: ours has this output, the reference has only {list(ref)}"
                )
            pairs += _flatten(value, ref[key], f"{where}{key}.")
        return pairs
    if isinstance(output, Sequence) and not isinstance(output, str):
        if isinstance(ref, Mapping):
            ref = tuple(ref.values())  # a ModelOutput read as its tuple
        if not isinstance(ref, Sequence) or len(ref) != len(output):
            raise AssertionError(f"{where or 'output'}: ours has {len(output)} outputs")
        pairs = []
        for index, (value, other) in enumerate(zip(output, ref)):
            pairs += _flatten(value, other, f"{where}{index}.")
        return pairs
    raise TypeError(
        f"{where or 'output'}: cannot compare an output of type {type(output)}"
    )


def _compare(ours: Any, ref: Any, atol: float, rtol: float, what: str) -> None:
    for where, mine, theirs in _flatten(ours, ref, ""):
        where = where.rstrip(".")
        if mine.shape != theirs.shape:
            raise AssertionError(
                f"{what} {where}: ours has shape {_shape(mine)}, the reference {_shape(theirs)}"
            )
        torch.testing.assert_close(
            mine,
            theirs,
            atol=atol,
            rtol=rtol,
            msg=lambda m, w=where: f"{what} {w}: {m}",
        )


def _clone(inputs: Sequence[Any]) -> list[Any]:
    return [
        x.clone() if isinstance(x, torch.Tensor) else copy.deepcopy(x) for x in inputs
    ]


def _load(ours: nn.Module, ref: nn.Module) -> None:
    assert_same_keys(ours, ref)
    ours.load_state_dict(ref.state_dict(), strict=True)


def assert_same_outputs(
    ours: nn.Module,
    ref: nn.Module,
    *inputs: Any,
    atol: float = 1e-5,
    rtol: float = 0.0,
    load: bool = True,
) -> Any:
    """In eval mode, ours gives the reference's outputs once it has the reference's weights.

    The reference's state_dict is loaded strictly into ours first (``load=False`` compares
    the two as they are, for a module that loaded its checkpoint itself); the keys are
    checked with :func:`assert_same_keys` so that a difference is listed rather than
    reported by ``load_state_dict``. Outputs: a tensor, a tuple, a dict or a transformers
    ``ModelOutput`` (see :func:`_flatten`). Returns our output.
    """
    if load:
        _load(ours, ref)
    ours.eval()
    ref.eval()
    with torch.no_grad():
        expected = ref(*_clone(inputs))
        actual = ours(*_clone(inputs))
    _compare(actual, expected, atol, rtol, "output")
    return actual


def _grads(module: nn.Module) -> dict[str, torch.Tensor | None]:
    # Every name of a tied parameter, so that both sides are read under the same names
    # whichever of them each registered first.
    return {
        name: param.grad
        for name, param in module.named_parameters(remove_duplicate=False)
    }


def assert_same_train_step(
    ours: nn.Module,
    ref: nn.Module,
    make_inputs: Callable[[], Any],
    loss_fn: Callable[..., torch.Tensor],
    seed: int,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """In train mode, one forward and backward give the same loss, gradients and statistics.

    The reference's state_dict is loaded strictly into ours; ``make_inputs()`` (a tensor or
    a tuple of them, drawn once with torch seeded by ``seed``) feeds both; torch is seeded
    with ``seed`` again before each forward, so that dropout and stochastic depth draw the
    same units when they draw in the same order. ``loss_fn(output, *inputs)`` turns each
    model's own output into a scalar (see :func:`primary`). Compared: the losses, every
    parameter's gradient by name, and the buffers after the step (BatchNorm's running
    statistics, updated in train mode). Returns (our loss, the reference's loss).
    """
    _load(ours, ref)
    torch.manual_seed(seed)
    inputs = make_inputs()
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    losses = []
    for module in (ref, ours):
        module.train()
        module.zero_grad(set_to_none=True)
        given = _clone(inputs)
        torch.manual_seed(seed)
        loss = loss_fn(module(*given), *given)
        loss.backward()
        losses.append(loss.detach())
    ref_loss, our_loss = losses
    torch.testing.assert_close(
        our_loss, ref_loss, atol=atol, rtol=rtol, msg=lambda m: f"train-step loss: {m}"
    )
    mine, theirs = _grads(ours), _grads(ref)
    if set(mine) != set(theirs):
        raise AssertionError(
            f"parameters differ: ours only {sorted(set(mine) - set(theirs))}, "
            f"the reference's only {sorted(set(theirs) - set(mine))}"
        )
    for name, grad in theirs.items():
        other = mine[name]
        if grad is None or other is None:
            if grad is not other:
                side = "ours" if other is None else "the reference's"
                raise AssertionError(f"gradient of {name}: none in {side}")
            continue
        torch.testing.assert_close(
            other,
            grad,
            atol=atol,
            rtol=rtol,
            msg=lambda m, n=name: f"gradient of {n}: {m}",
        )
    buffers = dict(ref.named_buffers())
    for name, buffer in ours.named_buffers():
        if name in buffers:
            torch.testing.assert_close(
                buffer,
                buffers[name],
                atol=atol,
                rtol=rtol,
                msg=lambda m, n=name: f"buffer {n} after the train step: {m}",
            )
    return our_loss, ref_loss


def primary_square_loss(output: Any, *inputs: Any) -> torch.Tensor:
    """The mean square of the output's main tensor (see :func:`primary`)."""
    return primary(output).float().square().mean()


def assert_drop_in(
    ours: nn.Module,
    ref: nn.Module,
    *inputs: Any,
    loss_fn: Callable[..., torch.Tensor] = primary_square_loss,
    seed: int = 0,
    atol: float = 1e-5,
) -> None:
    """Ours is a drop-in replacement for ``ref``: every check of this module, in turn.

    The same keys and shapes; ``ref`` randomised from ``seed``; its state_dict loaded
    strictly into ours; the same outputs in eval mode; the same loss, gradients and
    statistics after one train step (``loss_fn(output, *inputs)``, by default the mean
    square of the main output: a model with several outputs passes one that reads them all).
    """
    assert_same_keys(ours, ref)
    randomise(ref, seed)
    assert_same_outputs(ours, ref, *inputs, atol=atol)
    assert_same_train_step(ours, ref, lambda: inputs, loss_fn, seed, atol=atol)
