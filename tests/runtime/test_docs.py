"""docs/training.md documents every key of the train section and every metric."""

from __future__ import annotations

import pytest

from nnspec.runtime.library_metrics import LIBRARY_METRICS
from nnspec.runtime.metrics import METRICS
from nnspec.spec.train import DataSpec, TrainSpec
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "key",
    [*TrainSpec.model_fields, *DataSpec.model_fields, *METRICS, *LIBRARY_METRICS],
)
def test_every_key_and_metric_has_a_table_row(key: str) -> None:
    assert f"\n| `{key}` |" in DOC or f"| `{key}`, `" in DOC or f", `{key}` |" in DOC
