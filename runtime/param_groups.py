"""Which parameters train, and how: optimizer parameter groups and unfreezing by epoch."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

from ..spec.errors import SpecError, suggest
from ..spec.train import TrainSpec

__all__ = ["optimizer_groups", "unfreeze_at"]

Fail = Callable[..., SpecError]


def _matching(names: list[str], pattern: str) -> list[str]:
    return [
        n
        for n in names
        if fnmatch.fnmatchcase(n, pattern) or n.startswith(f"{pattern}.")
    ]


def optimizer_groups(
    model: nn.Module, train: TrainSpec, fail: Fail
) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: each ``param_groups`` entry takes the
    parameters that match it first, the rest form the default group. Frozen parameters
    that an ``unfreeze`` rule will train later are included from the start (a parameter
    without a gradient is skipped by every torch optimizer)."""
    named = dict(model.named_parameters())
    later = {
        name
        for i, rule in enumerate(train.unfreeze)
        for name in _unfreezable(named, rule.match, ("unfreeze", i, "match"), fail)
    }
    chosen = [n for n, p in named.items() if p.requires_grad or n in later]
    taken: set[str] = set()
    groups: list[dict[str, Any]] = []
    for i, group in enumerate(train.optimizer.param_groups or []):
        names = [n for n in _matching(chosen, group.match) if n not in taken]
        if not names:
            raise fail(
                ("optimizer", "param_groups", i, "match"),
                f"parameter group {group.match!r} matches no trainable parameter"
                f"{suggest(group.match, chosen)}",
            )
        taken.update(names)
        groups.append({"params": [named[n] for n in names], **group.arguments})
    rest = [named[n] for n in chosen if n not in taken]
    if rest or not groups:
        groups.insert(0, {"params": rest})
    return groups


def _unfreezable(
    named: dict[str, nn.Parameter], pattern: str, path: tuple, fail: Fail
) -> list[str]:
    frozen = [n for n, p in named.items() if not p.requires_grad]
    found = _matching(frozen, pattern)
    if not found:
        raise fail(
            path,
            f"unfreeze {pattern!r} matches no frozen parameter"
            + (suggest(pattern, frozen) if frozen else "; nothing is frozen"),
        )
    return found


def unfreeze_at(model: nn.Module, train: TrainSpec, epoch: int) -> list[str]:
    """Make the parameters of every rule due by ``epoch`` (1-based) trainable; returns
    the names that changed."""
    changed = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            continue
        if any(
            rule.at_epoch <= epoch and _matching([name], rule.match)
            for rule in train.unfreeze
        ):
            param.requires_grad_(True)
            changed.append(name)
    return changed
