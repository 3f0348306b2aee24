"""How the summary, the pictures and the profile write numbers."""

from __future__ import annotations

__all__ = ["format_bytes", "format_count", "format_time"]


def format_count(n: float) -> str:
    """1303440 -> '1.30M'; small numbers as they are."""
    if n < 1000:
        return f"{n:g}"
    for unit in ("K", "M", "G", "T", "P"):
        n /= 1000
        if n < 1000:
            digits = 0 if n >= 100 else 1 if n >= 10 else 2
            return f"{n:.{digits}f}{unit}"
    return f"{n:.0f}P"


def format_bytes(n: float) -> str:
    """Binary units: 1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_time(us: float) -> str:
    """Microseconds in the unit that reads best: 1530.0 -> '1.53 ms'."""
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1e3:
        return f"{us / 1e3:.2f} ms"
    return f"{us:.1f} us"
