"""The corpus of bad specs: each file says, in its leading comments, what must be reported.

A case file starts with comment lines::

    # What the mistake is.
    # expect: 7:12 "did you mean 'kernel_size'?" "Conv2d"
    # expect: 9:5 "unknown reference"      (one line per error, in document order)
    # params: {widht: 3}                    (optional: param overrides, as YAML)
    # allow-import: tests                   (optional: packages custom ops may import)

Loading it must raise SpecError with exactly those errors: the file's path, each line and
column, and every quoted word in that error's message. The positions were chosen by
reading each spec (which token is wrong), not by copying what the compiler prints.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import nnspec
from nnspec.cli import compile_main
from nnspec.spec import SpecError
from nnspec.spec.yaml_source import MAX_DEPTH, MAX_DOCUMENT_BYTES

CASES_DIR = Path(__file__).parent / "cases"
FILES = sorted(CASES_DIR.glob("*.yaml"))

# Every kind of mistake the corpus must cover, by file-name prefix.
CATEGORIES = {
    "yaml": "YAML syntax and loading",
    "structure": "structure and types checked by the schema",
    "type": "argument values of the wrong type",
    "op": "unknown ops",
    "arg": "unknown, misspelt or misplaced arguments",
    "expr": "bad expressions",
    "ref": "undefined, forward and duplicate references",
    "name": "names that reach generated code",
    "node": "nodes without a clear kind",
    "shape": "shape mismatches",
    "inferred": "explicit arguments the compiler infers",
    "block": "block inputs, params and recursion",
    "import": "custom imports",
    "param": "param overrides",
    "init": "init rules",
    "freeze": "freeze globs",
    "limit": "limits",
    "zoo": "names of the model zoo",
}

_EXPECT = re.compile(r"^# expect: (\d+):(\d+)((?: .*)?)$")


@dataclass
class Expected:
    line: int
    column: int
    words: list[str]


@dataclass
class Case:
    path: Path
    expected: list[Expected] = field(default_factory=list)
    params: dict[str, Any] | None = None
    allow_imports: list[str] = field(default_factory=list)

    def load(self) -> SpecError:
        with pytest.raises(SpecError) as info:
            nnspec.load(self.path, self.params, allow_imports=self.allow_imports)
        return info.value


def read_case(path: Path) -> Case:
    case = Case(path)
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if match := _EXPECT.match(line):
            words = shlex.split(match.group(3))
            case.expected.append(Expected(int(match[1]), int(match[2]), words))
        elif line.startswith("# params:"):
            case.params = yaml.safe_load(line.partition(":")[2])
        elif line.startswith("# allow-import:"):
            case.allow_imports = line.partition(":")[2].split()
    assert case.expected, f"{path.name} has no '# expect:' line"
    return case


def assert_rendered(text: str, case: Case) -> None:
    """``path:line:col: error: message``, the source line, and a caret under the column."""
    lines = text.splitlines()
    source = case.path.read_text(encoding="utf-8").splitlines()
    heads = [i for i, line in enumerate(lines) if ": error: " in line]
    assert len(heads) == len(case.expected), text
    for i, want in zip(heads, case.expected):
        assert lines[i].startswith(f"{case.path}:{want.line}:{want.column}: error: ")
        assert lines[i + 1] == "    " + source[want.line - 1].rstrip()
        assert lines[i + 2] == "    " + " " * (want.column - 1) + "^"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_spec_is_reported_at_its_position(path: Path) -> None:
    case = read_case(path)
    err = case.load()
    found = [(d.path, d.line, d.column) for d in err.diagnostics]
    wanted = [(str(path), e.line, e.column) for e in case.expected]
    assert found == wanted, err.render()
    for diag, want in zip(err.diagnostics, case.expected):
        for word in want.words:
            assert word in diag.message, f"{word!r} not in {diag.message!r}"
    assert_rendered(err.render(), case)


def test_corpus_covers_every_kind_of_mistake() -> None:
    assert len(FILES) >= 60
    prefixes = {p.stem.split("_", 2)[1] for p in FILES}
    assert set(CATEGORIES) <= prefixes, set(CATEGORIES) - prefixes
    assert prefixes <= set(CATEGORIES), prefixes - set(CATEGORIES)
    several = [p.name for p in FILES if len(read_case(p).expected) >= 3]
    assert len(several) >= 3, several


def _case(stem: str) -> Case:
    (path,) = CASES_DIR.glob(f"*_{stem}.yaml")
    return read_case(path)


CLI_CASES = [
    "yaml_unclosed_flow_mapping",
    "structure_every_unknown_key",
    "arg_independent_errors_together",
    "inferred_in_features",
    "import_not_allowed",
    "limit_alias_bomb",
]


@pytest.mark.parametrize("stem", CLI_CASES)
def test_compile_model_prints_errors_with_carets(
    stem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = _case(stem)
    argv = [str(case.path), "-o", str(tmp_path / "out.py")]
    argv += [f"--allow-import={pkg}" for pkg in case.allow_imports]
    assert compile_main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert_rendered(err, case)
    assert not (tmp_path / "out.py").exists()


def test_compile_model_process_exits_2_without_traceback(tmp_path: Path) -> None:
    case = _case("structure_many_errors_at_once")
    script = Path(sys.executable).with_name("compile-model")
    command = (
        [str(script)]
        if script.exists()
        else [
            sys.executable,
            "-c",
            "from nnspec.cli import compile_main as m; raise SystemExit(m())",
        ]
    )
    result = subprocess.run(
        [*command, str(case.path), "-o", str(tmp_path / "out.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert_rendered(result.stderr, case)


def test_document_size_is_checked_before_parsing(tmp_path: Path) -> None:
    # The text ends with a syntax error: only the size may be reported.
    path = tmp_path / "huge.yaml"
    head = "nnspec: 1\nname: Net\ninputs: {x: [8]}\nlayers: [ReLU]\n"
    filler = "# padding\n" * (MAX_DOCUMENT_BYTES // 10)
    path.write_text(head + filler + "oops: [\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        nnspec.load(path)
    assert (info.value.path, info.value.line, info.value.column) == (str(path), 1, 1)
    assert "larger than 8 MiB" in info.value.message
    assert len(info.value.diagnostics) == 1


def test_deep_nesting_fails_at_the_limit(tmp_path: Path) -> None:
    # Past nnspec's limit, within any YAML library's own: nnspec's check decides.
    path = tmp_path / "deep.yaml"
    depth = 200
    path.write_text("x: " + "[" * depth + "]" * depth + "\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        nnspec.load(path)
    # The root mapping is level 1, so bracket k opens level k + 1.
    assert (info.value.line, info.value.column) == (1, 3 + MAX_DEPTH)
    assert f"nesting deeper than {MAX_DEPTH} levels" in info.value.message


def test_very_deep_nesting_fails_without_recursing(tmp_path: Path) -> None:
    # Far past the limit: loading stops at a bracket too deep, without recursing
    # through the rest (which once crashed the YAML library). Which check comes
    # first depends on the YAML library: libyaml scans ahead and, from PyYAML 6.0.4,
    # stops at its own nesting limit before nnspec sees the events. Either way the
    # error is nnspec's SpecError, on line 1, at a bracket past nnspec's limit.
    path = tmp_path / "deep.yaml"
    depth = 100_000
    path.write_text("x: " + "[" * depth + "]" * depth + "\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        nnspec.load(path)
    error = info.value
    assert (error.path, error.line) == (str(path), 1)
    if f"nesting deeper than {MAX_DEPTH} levels" in error.message:
        assert error.column == 3 + MAX_DEPTH
    else:  # the YAML library's limit, reported as a syntax error
        assert error.message.startswith("YAML syntax: ")
        assert 3 + MAX_DEPTH < error.column <= 3 + depth
    assert len(error.diagnostics) == 1
