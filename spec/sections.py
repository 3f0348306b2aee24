"""One top-level section of a document checked alone, as the whole document would be.

``nnspec train --set`` changes keys of the train section only, after the compiler
validated the whole spec: what is left to check is that section, not the model
(whose validation grows with the number of layers). The mistakes found read
exactly as ``validate_document`` reports them: the same messages, at the same
positions, in the same order.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pydantic

from .errors import Diagnostic, SpecError
from .model import SpecModel
from .schema import structural_schema
from .train import TrainSpec
from .validate import _leaf_errors, _messages, _pydantic_diagnostics, _validator
from .yaml_source import Document

__all__ = ["validate_train"]


@cache
def _section_validator(key: str) -> Any:
    """The schema of one property of the document (its ``$defs`` kept, so that
    its references resolve)."""
    schema = structural_schema()
    section = {
        "$schema": schema["$schema"],
        "$defs": schema["$defs"],
        **schema["properties"][key],
    }
    return _validator(section)


@cache
def _section_model(key: str) -> type[pydantic.BaseModel]:
    """A model holding the one field ``key`` of SpecModel, as SpecModel declares
    it: its errors are located as SpecModel's (``("train", "data", ...)``)."""
    field = SpecModel.model_fields[key]
    return pydantic.create_model(
        f"_{key.title()}Section",
        __config__=SpecModel.model_config,
        **{key: (field.annotation, field)},  # type: ignore[call-overload]
    )


def _validate_section(doc: Document, key: str) -> Any:
    data = doc.data[key]
    validator = _section_validator(key)
    if not validator.is_valid(data):
        diags: dict[tuple[int, int, str], Diagnostic] = {}
        for error in validator.iter_errors(data):
            # The path of a top-level error is the start of every path below it.
            error.path.appendleft(key)
            for leaf in _leaf_errors(error):
                for diag in _messages(leaf, doc):
                    diags.setdefault((diag.line, diag.column, diag.message), diag)
        found = sorted(diags.values(), key=lambda d: (d.line, d.column))
        raise SpecError(diagnostics=found, source=doc.source)
    try:
        section = _section_model(key).model_validate({key: data})
    except pydantic.ValidationError as exc:
        raise SpecError(
            diagnostics=list(_pydantic_diagnostics(exc, doc)), source=doc.source
        ) from None
    return getattr(section, key)


def validate_train(doc: Document) -> TrainSpec | None:
    """The document's ``train:`` section validated alone: the rest of ``doc`` must
    be a document the compiler validated already."""
    train = _validate_section(doc, "train")
    assert train is None or isinstance(train, TrainSpec)
    return train
