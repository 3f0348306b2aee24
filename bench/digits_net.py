"""The network of examples/digits.yaml, written by hand (torch alone: imported by
the start-up baseline of bench/first_step.py as well as by bench/hand_digits.py)."""

from __future__ import annotations

from torch import nn

__all__ = ["digits_net"]


def digits_net() -> nn.Module:
    """Conv 16, conv 32, max-pool, linear 128, dropout, linear 10, as the spec."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 128),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.Linear(128, 10),
    )
