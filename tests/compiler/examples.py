"""The example specs, compiled once per test session, and helpers to compare models."""

from __future__ import annotations

from functools import cache
from typing import Any

from torch import nn

import nnspec
from tests.conftest import EXAMPLES

__all__ = [
    "EXAMPLE_NAMES",
    "copy_weights",
    "load_example",
    "num_params",
    "parametrised_leaves",
]

#: Every spec in examples/, by file stem.
EXAMPLE_NAMES: tuple[str, ...] = tuple(sorted(p.stem for p in EXAMPLES.glob("*.yaml")))


@cache
def _load(name: str, params: tuple[tuple[str, Any], ...]) -> nnspec.Spec:
    return nnspec.load(EXAMPLES / f"{name}.yaml", params=dict(params) or None)


def load_example(name: str, **params: Any) -> nnspec.Spec:
    """examples/<name>.yaml compiled with ``params``; cached for the session."""
    return _load(name, tuple(sorted(params.items())))


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy ``source``'s state into ``target`` entry by entry, in registration order.

    Names may differ; the number of entries and each entry's shape must not.
    """
    src = list(source.state_dict().values())
    dst = target.state_dict()
    assert len(src) == len(dst), f"{len(src)} state entries vs {len(dst)}"
    for (key, theirs), ours in zip(dst.items(), src):
        assert theirs.shape == ours.shape, (
            f"{key}: {tuple(theirs.shape)} vs {ours.shape}"
        )
    target.load_state_dict(dict(zip(dst, src)))


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parametrised_leaves(model: nn.Module) -> list[str]:
    """Type and settings of every leaf module that holds parameters, in order."""
    return [
        f"{type(m).__name__}({m.extra_repr()})"
        for m in model.modules()
        if not list(m.children()) and any(True for _ in m.parameters(recurse=False))
    ]
