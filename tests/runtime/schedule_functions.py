"""Learning-rate functions that specs of the runtime tests name as
``tests.runtime.schedule_functions:...`` (LambdaLR's lr_lambda)."""

from __future__ import annotations

__all__ = ["halve_every_4", "not_callable"]

not_callable = 3


def halve_every_4(step: int) -> float:
    return 0.5 ** (step // 4)
