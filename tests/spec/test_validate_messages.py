"""Messages of structural errors: what was expected, what was received."""

from __future__ import annotations

import pytest

import nnspec


def test_enum_keys_elsewhere_list_their_choices() -> None:
    text = (
        "nnspec: 1\nname: A\ninputs: {x: {shape: [3], dtype: float}}\nlayers: [ReLU]\n"
    )
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.loads(text, path="d.yaml")
    assert str(info.value).startswith(
        "d.yaml:3:33: error: inputs.x.dtype: expected one of 'float32', 'float64'"
    )
    assert "received string 'float'" in str(info.value)
