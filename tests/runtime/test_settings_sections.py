"""The train section is read as the compiler validated it; with --set overrides it
alone is checked again, and its mistakes read as a check of the whole spec's would."""

from __future__ import annotations

import pytest

import nnspec
from nnspec.runtime.overrides import apply_overrides
from nnspec.runtime.settings import resolve_settings
from nnspec.spec.sections import validate_train
from nnspec.spec.validate import validate_document
from tests.runtime.conftest import TINY_MODEL

TRAIN = """\
train:
  data: {source: synthetic, batch_size: 8}
  loss: {logits: {op: CrossEntropyLoss, target: label}}
  optimizer: {op: AdamW, lr: 0.01}
  metrics: {logits: [accuracy]}
"""


def tiny() -> nnspec.Spec:
    return nnspec.loads(TINY_MODEL + TRAIN, path="tiny.yaml")


def test_without_overrides_the_compiled_train_section_is_used() -> None:
    spec = tiny()
    settings = resolve_settings(spec)
    assert settings.train is spec.compiled.spec.train
    assert settings.doc is spec.compiled.document


def test_overrides_leave_the_compiled_spec_as_it_was() -> None:
    spec = tiny()
    settings = resolve_settings(spec, {"data.batch_size": 4, "optimizer.lr": 0.5})
    assert (settings.train.data.batch_size, settings.optimizer_args["lr"]) == (4, 0.5)
    compiled = spec.compiled
    assert compiled.spec.train is not None
    assert compiled.spec.train.data.batch_size == 8
    assert compiled.document.data["train"]["optimizer"]["lr"] == 0.01
    # The document's other sections are shared, not copied.
    assert settings.doc.data["layers"] is compiled.document.data["layers"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"epoch": 2},  # an unknown key, with a suggestion
        {"data.batch_size": 0},  # below a minimum
        {"data.batch_size": "big"},  # a wrong type
        {"data": 3},  # a mapping replaced by a number
        {"precision": "fp8"},  # not one of an enum
        {"loss.logits.target": 5, "epochs": -1},  # two mistakes, in order
        {"compile.backend": 3, "compile.fulgraph": True},
        {"optimizer": {"lr": 0.1}},  # a required key missing
        {"unfreeze": [{"epoch": 0}]},  # nested in a list
        {"loss": {}},  # an empty mapping
        # A number as a key: the schema passes it, the typed model does not.
        {"loss": {1: {"op": "L1Loss", "target": "y"}}},
    ],
)
def test_the_section_alone_reports_what_the_whole_document_reports(
    overrides: dict,
) -> None:
    doc = apply_overrides(tiny().compiled.document, overrides)
    with pytest.raises(nnspec.SpecError) as whole:
        validate_document(doc)
    with pytest.raises(nnspec.SpecError) as alone:
        validate_train(doc)
    assert str(alone.value) == str(whole.value)
    assert alone.value.diagnostics == whole.value.diagnostics


def test_a_valid_section_alone_equals_the_whole_documents() -> None:
    doc = apply_overrides(tiny().compiled.document, {"epochs": 3, "seed": 7})
    assert validate_train(doc) == validate_document(doc).train
