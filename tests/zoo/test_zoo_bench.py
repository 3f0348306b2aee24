"""bench/zoo.py compares zoo specs with references that exist."""

from __future__ import annotations

import nnspec.zoo
from bench import zoo as bench_zoo
from bench.__main__ import SECTIONS


def test_every_registered_reference_is_a_zoo_spec() -> None:
    assert set(bench_zoo.REFERENCES) <= set(nnspec.zoo.names())
    assert "unet" in bench_zoo.REFERENCES
    assert SECTIONS["zoo"][1] is bench_zoo.run
