"""No spec value becomes code: exploits against the generated source, and the allowlist.

Each payload would create a marker file inside ``tmp_path`` if it ran; the tests assert
that it was not created, and that the spec is either refused with a located error or
compiled into a harmless literal.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import nnspec
from nnspec.cli import compile_main
from nnspec.spec import SpecError

from .ast_allowlist import check_generated_source


def _payload(marker: Path) -> str:
    """Python that creates ``marker`` if it is ever run (single quotes doubled for YAML)."""
    return f"__import__(''pathlib'').Path(''{marker}'').touch()"


def _import_file(path: Path) -> object:
    spec = importlib.util.spec_from_file_location(f"generated_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _placeholder_spec(marker: Path) -> str:
    # A string that holds the text of a placeholder, next to a string that breaks out
    # of its quotes: spliced together, the second becomes code in __init__.
    inplace = f"\"+str({_payload(marker)})+\" != act != ''__nnspec_str_0__''"
    return (
        "nnspec: 1\n"
        "name: Net\n"
        "inputs: {x: [8]}\n"
        "blocks:\n"
        "  B:\n"
        "    params: {act: relu}\n"
        "    layers:\n"
        f"      - {{op: ReLU, inplace: '${{{inplace}}}'}}\n"
        "layers:\n"
        "  - {op: B, act: gelu}\n"
    )


def test_placeholder_text_in_a_string_stays_a_literal(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    spec_file = tmp_path / "net.yaml"
    spec_file.write_text(_placeholder_spec(marker), encoding="utf-8")
    out = tmp_path / "net.py"

    assert compile_main([str(spec_file), "-o", str(out)]) == 0
    assert not marker.exists()
    spec = nnspec.load(spec_file)
    spec.build()
    assert not marker.exists()
    module = _import_file(out)
    module.Net()  # type: ignore[attr-defined]
    assert not marker.exists()

    source = out.read_text(encoding="utf-8")
    assert "'__nnspec_str_0__'" not in source
    assert '!= act != "__nnspec_str_0__"' in source
    check_generated_source(source)
