"""Pausing Python's cyclic garbage collector during bulk work.

Loading and compiling a spec make many small objects that live on, and few reference
cycles. While they are made, the collector runs again and again, and each full
collection walks every object in memory (torch's included): for a spec of 10,000 nodes
that is most of the time, and it grows with the square of the spec's size. Paused, the
objects are examined once, at the next collection after the work.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["paused_gc"]


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic collector off inside the block (and on again after it, if it was)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
