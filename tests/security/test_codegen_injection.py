"""No spec value becomes code: exploits against the generated source, and the allowlist.

Each payload would create a marker file inside ``tmp_path`` if it ran; the tests assert
that it was not created, and that the spec is either refused with a located error or
compiled into a harmless literal.
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnspec
from nnspec.cli import compile_main
from nnspec.spec import SpecError
from nnspec.spec.naming import Namespace, name_problem
from tests.conftest import EXAMPLES, ROOT

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


# Every character Python or a text tool reads as the end of a line, and NUL.
LINE_BREAKS = ["\n", "\r", "\r\n", "\f", "\v", "\x1c", "\x1d", "\x1e", "\x85"]
LINE_BREAKS += ["\u2028", "\u2029", "\x00"]


def _lines_are_whole(source: str) -> None:
    """Only \\n ends a line of the source, and it holds no NUL or control character."""
    for number, line in enumerate(source.split("\n"), 1):
        assert line.isprintable(), f"line {number}: {line!r}"


def _compile_checked(spec_file: Path, out: Path) -> str:
    """compile-model's output for the spec: whole lines only, within the allowlist."""
    assert compile_main([str(spec_file), "-q", "-o", str(out)]) == 0
    source = out.read_text(encoding="utf-8")
    _lines_are_whole(source)
    check_generated_source(source)
    return source


@pytest.mark.parametrize("brk", LINE_BREAKS, ids=[repr(b) for b in LINE_BREAKS])
def test_a_base_file_name_cannot_end_its_comment(
    brk: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    if brk == "\x00":
        pytest.skip("no file system takes NUL in a file name")
    code = "__import__('pathlib').Path('MARKER').touch()"
    base_name = f"base{brk}{code}{brk}.yaml"
    (tmp_path / base_name).write_text(
        "nnspec: 1\nname: Base\ninputs: {x: [4]}\nlayers:\n"
        "  - {op: Linear, name: fc, out_features: 2}\n",
        encoding="utf-8",
    )
    quoted = base_name.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    spec_file = tmp_path / "net.yaml"
    spec_file.write_text(
        f'nnspec: 1\nname: Net\nextends: "{quoted}"\n'
        "insert_after: {fc: {op: ReLU, name: act}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "net.py"
    source = _compile_checked(spec_file, out)
    nnspec.load(spec_file).build()
    _import_file(out).Net()  # type: ignore[attr-defined]
    assert not (tmp_path / "MARKER").exists()
    escaped = brk.encode("unicode_escape").decode("ascii")
    assert f"        # base{escaped}{code}{escaped}.yaml:5  (B, 2)" in source


@pytest.mark.parametrize("brk", LINE_BREAKS, ids=[repr(b) for b in LINE_BREAKS])
def test_docstrings_keep_every_character_on_its_line(brk: str, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    doc = f'x{brk}"""{brk}{code}{brk}"""'
    quoted = doc.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    spec_file = tmp_path / "net.yaml"
    spec_file.write_text(
        f'nnspec: 1\nname: Net\ndoc: "{quoted}"\ninputs: {{x: [4]}}\n'
        f'blocks:\n  B:\n    doc: "{quoted}"\n    layers: [ReLU]\n'
        "layers: [B]\n",
        encoding="utf-8",
    )
    out = tmp_path / "net.py"
    _compile_checked(spec_file, out)
    module = _import_file(out)
    assert not marker.exists()
    # The docstrings read back as written, but for indentation and a closing space.
    expected = inspect.cleandoc(doc)
    assert inspect.cleandoc(module.Net.__doc__).rstrip() == expected  # type: ignore[attr-defined]
    assert inspect.cleandoc(module.B.__doc__).rstrip() == expected  # type: ignore[attr-defined]


def _error_at(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        nnspec.loads(text, path="net.yaml").source()
    return info.value


HEAD = "nnspec: 1\nname: Net\ninputs: {x: [4]}\n"


@pytest.mark.parametrize(
    ("body", "line", "column", "words"),
    [
        # A name that is not an identifier, as the target of use: (it used to hang).
        (
            "layers:\n  - {op: ReLU, name: fc}\n  - {use: fc-}\n",
            6,
            11,
            ["use: 'fc-'", "is not an identifier"],
        ),
        (
            'layers:\n  - {op: ReLU, name: fc}\n  - {use: "fc\\n"}\n',
            6,
            11,
            ["use: 'fc\\n'", "is not an identifier"],
        ),
        # A trailing newline passes a pattern ending in $ in Python, not in JSON Schema.
        (
            'layers:\n  - {op: ReLU, name: "a\\n"}\n',
            5,
            22,
            ["layers[0].name", "an identifier", "'a\\n'"],
        ),
        (
            'blocks:\n  B:\n    inputs: ["x\\n"]\n    layers: [ReLU]\nlayers: [B]\n',
            6,
            14,
            ["blocks.B.inputs[0]", "lowercase identifier", "'x\\n'"],
        ),
        (
            'blocks:\n  "B\\n": {layers: [ReLU]}\nlayers: [ReLU]\n',
            5,
            10,
            ["blocks['B\\n']", "CapWords identifier", "'B\\n'"],
        ),
        (
            'layers:\n  - {op: Linear, "out_featuresé": 3}\n',
            5,
            18,
            ["'out_featuresé' is not a valid argument name"],
        ),
    ],
)
def test_names_that_are_not_identifiers_are_refused_where_written(
    body: str, line: int, column: int, words: list[str]
) -> None:
    err = _error_at(HEAD + body)
    assert (err.line, err.column) == (line, column), str(err)
    for word in words:
        assert word in err.message, err.message


def test_input_and_model_names_with_a_trailing_newline_are_refused() -> None:
    err = _error_at('nnspec: 1\nname: Net\ninputs: {"x\\n": [4]}\nlayers: [ReLU]\n')
    assert (err.line, err.column) == (3, 10)
    assert "input name 'x\\n' is not a lowercase identifier" in err.message
    err = _error_at('nnspec: 1\nname: "Net\\n"\ninputs: {x: [4]}\nlayers: [ReLU]\n')
    assert (err.line, err.column) == (2, 7)
    assert "name: expected a CapWords identifier" in err.message


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=6))
def test_namespace_always_hands_out_a_legal_unique_name(candidates: list[str]) -> None:
    names = Namespace({"fc", "x"})
    given_out = [names.fresh(c) for c in candidates]
    assert len(set(given_out)) == len(given_out)
    for name in given_out:
        assert name_problem(name) is None, name
        assert name not in ("fc", "x")


def test_source_that_does_not_compile_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # With the escaping of docstrings undone, a NUL reaches the source: the check
    # before writing catches it as the compiler's bug, and nothing is written.
    from nnspec.compiler import codegen

    monkeypatch.setattr(codegen, "source_text", lambda text, newlines=False: text)
    spec_file = tmp_path / "net.yaml"
    spec_file.write_text(
        f'{HEAD}doc: "a\\0b"\nlayers: [ReLU]\n',
        encoding="utf-8",
    )
    out = tmp_path / "net.py"
    for quiet in ([], ["-q"]):
        assert compile_main([str(spec_file), *quiet, "-o", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: internal error: the generated source does not")
        assert "this is a bug in nnspec" in err
        assert "Traceback" not in err
        assert not out.exists()


def test_a_nul_in_a_doc_is_an_escape_in_the_docstring(tmp_path: Path) -> None:
    spec_file = tmp_path / "net.yaml"
    spec_file.write_text(f'{HEAD}doc: "a\\0b"\nlayers: [ReLU]\n', encoding="utf-8")
    out = tmp_path / "net.py"
    assert compile_main([str(spec_file), "-q", "-o", str(out)]) == 0
    source = out.read_text(encoding="utf-8")
    assert '    """a\\x00b"""\n' in source
    assert _import_file(out).Net.__doc__ == "a\0b"  # type: ignore[attr-defined]


# -- the allowlist over every spec the project ships ------------------------------------


def _language_specs() -> dict[str, str]:
    from tests.compiler import test_spec_language as language

    return {
        name: value
        for name, value in vars(language).items()
        if name.isupper() and isinstance(value, str) and "nnspec: 1" in value
    }


@pytest.mark.parametrize(
    "spec_file", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem
)
def test_allowlist_passes_every_example_and_its_golden_file(spec_file: Path) -> None:
    source = nnspec.load(spec_file).source()
    check_generated_source(source)
    golden = ROOT / "tests" / "golden" / f"{spec_file.stem}.py"
    check_generated_source(golden.read_text(encoding="utf-8"))


def test_allowlist_passes_the_language_examples() -> None:
    specs = _language_specs()
    assert {"SECTION_1_LENET", "SECTION_4_TWO_HEADS", "SECTION_7_SPEC"} <= set(specs)
    for name, text in specs.items():
        try:
            source = nnspec.loads(text, path=f"{name.lower()}.yaml").source()
        except SpecError:
            continue  # the section's shape-error example
        check_generated_source(source)


def test_allowlist_passes_the_error_corpus_cases_that_compile() -> None:
    compiled = 0
    for case in sorted((ROOT / "tests" / "errors" / "cases").glob("*.yaml")):
        try:
            # Without the case's param overrides, some cases are valid specs.
            source = nnspec.load(case, allow_imports=["tests"]).source()
        except SpecError:
            continue
        check_generated_source(source, allowed_imports=["tests"])
        compiled += 1
    assert compiled >= 1


def test_allowlist_passes_custom_ops_of_allowed_packages() -> None:
    text = (
        HEAD + "layers:\n  - {op: 'tests.compiler.fixtures.custom_layers:Scale', "
        "features: 4}\n"
    )
    source = nnspec.loads(text, allow_imports=["tests"]).source()
    check_generated_source(source, allowed_imports=["tests"])
    with pytest.raises(AssertionError, match="import of 'tests"):
        check_generated_source(source)


GOOD = '''"""Net."""

import torch
from torch import nn


class Net(nn.Module):
    """Net."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fc = self.fc(x)
        return {}
'''


@pytest.mark.parametrize(
    ("statement", "words"),
    [
        ("self.fc = nn.Linear(4, 2)", None),
        ("__import__('os').system('true')", "a call of \"__import__('os').system\""),
        ("self.fc = __import__('os')", "a call of '__import__'"),
        ("eval('1')", "a call of 'eval'"),
        ("exec('1')", "a call of 'exec'"),
        ("open('x', 'w')", "a call of 'open'"),
        ("getattr(self, 'fc')", "a call of 'getattr'"),
        ("self.fc = self.fc.__class__", "dunder attribute"),
        ("self.fc = self.__dict__", "dunder attribute"),
        ("torch.load('x.pt')", "a call of 'torch.load'"),
        ("torch.hub.load('a', 'b')", "a call of 'torch.hub.load'"),
        ("import os", "Import statement"),
        ("self.fc = os", "the name 'os' is not defined"),
        ("self.fc = (lambda: 1)()", "a call of something other"),
        ("self.fc = [y for y in ()]", "ListComp expression"),
        ("self.fc = f'{1}'", "JoinedStr expression"),
        ("if True:\n            pass", "a condition other than"),
        ("self.fc.load_state_dict({})", "a call of 'self.fc.load_state_dict'"),
        ("self.apply(self.fc)", "a call of nn.Module's 'apply'"),
        ("nn.Linear(**{'a': 1})", "**kwargs in a call"),
        ("nn.utils.parametrize(1)", "a call of 'nn.utils.parametrize'"),
    ],
)
def test_allowlist_refuses_what_codegen_does_not_write(
    statement: str, words: str | None
) -> None:
    source = GOOD.replace("self.fc = nn.Linear(4, 2)", statement)
    if words is None:
        check_generated_source(source)
        return
    with pytest.raises(AssertionError, match="line 12: ") as info:
        check_generated_source(source)
    assert words in str(info.value)


def test_allowlist_refuses_imports_other_than_torch() -> None:
    with pytest.raises(AssertionError, match="line 3: import of 'os'"):
        check_generated_source(GOOD.replace("import torch\n", "import os\n"))
    with pytest.raises(AssertionError, match=r"import of 'subprocess\.run'"):
        check_generated_source(
            GOOD.replace("import torch\n", "from subprocess import run\n")
        )
