"""Every limit holds before the work, and the files a spec names are read safely.

The bombs run in one child process with its address space capped
(``resource.setrlimit(RLIMIT_AS)``) and a generous time bound: each must end in a
located SpecError (exit 2, a ``path:line:col: error:`` line, no traceback), not in
a hang, a traceback or exhausted memory. One child runs them all, so torch is
imported once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nnspec
from nnspec.spec import SpecError

HEAD = "nnspec: 1\nname: Net\ninputs: {x: [8]}\nlayers: [ReLU]\n"
MEMORY_CAP = 3 << 30  # bytes of address space for the child (torch's import included)
SECRET = "nnspec-test-secret-value-7f3a"

# The child: caps its memory, then runs compile-model on each case, in process.
CHILD = textwrap.dedent(
    """
    import contextlib, io, json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
    from nnspec.cli import compile_main
    results = {{}}
    for name, argv in json.loads(sys.argv[1]).items():
        err = io.StringIO()
        start = time.monotonic()
        with contextlib.redirect_stderr(err):
            try:
                code = compile_main(argv)
            except BaseException as exc:  # what a user would see as a traceback
                code = "traceback: " + type(exc).__name__
        results[name] = [code, err.getvalue(), time.monotonic() - start]
    print(json.dumps(results))
    """
)


def _param_chain(n: int) -> str:
    lines = ["nnspec: 1", "name: Net", "inputs: {x: [8]}", "layers: [ReLU]", "params:"]
    lines.append('  p0: "${[0]*2000}"')
    lines += [f'  p{i}: "${{p{i - 1}}}"' for i in range(1, n)]
    lines.append('  last: "${nope}"')
    return "\n".join(lines) + "\n"


def _bomb(tag: str) -> str:
    """Params holding an alias bomb of 74,733 YAML nodes, in six lines."""
    out = [f"  {tag}0: &{tag}0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 5):
        items = ", ".join([f"*{tag}{level - 1}"] * 9)
        out.append(f"  {tag}{level}: &{tag}{level} [{items}]")
    return "\n".join(out) + "\n"


def _expr(value: str) -> str:
    return HEAD + f"params:\n  p: {json.dumps(value)}\n"


# name -> (file name, text) for the spec files of each case.
EXPRESSIONS = {
    "shared_sublists": "${len([[1]*100000]*100000)}",
    "nested_shared_sublists": "${len([[[1]*300]*300]*300)}",
    "string_repetition": "${len('ab'*100000)}",
    "format_width": "${'%999999999d' % 1}",
    "format_star": "${'%*d' % [5, 1]}",
    "format_many_fields": "${'%900d' * 200 % 1}",
    "long_int_literal": "${" + "9" * 5000 + "}",
    "big_int_literal": "${" + "9" * 400 + "}",
    "big_power": "${(2**256)**256}",
    "deep_sum": "${" + "+".join(["1"] * 3000) + "}",
    "many_not": "${" + "not " * 2000 + "1}",
    "many_minus": "${" + "-" * 5000 + "1}",
    "deep_lists": "${" + "[" * 150 + "1" + "]" * 150 + "}",
}


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    root = tmp_path_factory.mktemp("bombs")
    cases: dict[str, list[str]] = {}

    def case(name: str, text: str) -> None:
        path = root / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        cases[name] = [str(path), "-o", str(root / f"{name}.py"), "-q"]

    case("params", _param_chain(1200))
    for name, value in EXPRESSIONS.items():
        case(name, _expr(value))
    case("yaml_int_digits", HEAD + "doc: " + "1" * 5000 + "\n")
    # An extends chain of 12 files, each small (an alias bomb of 66,430 nodes).
    (root / "chain0.yaml").write_text(HEAD + "params:\n" + _bomb("a"), encoding="utf-8")
    for i in range(1, 12):
        (root / f"chain{i}.yaml").write_text(
            f"extends: chain{i - 1}.yaml\nparams:\n" + _bomb(f"b{i}_"),
            encoding="utf-8",
        )
    cases["chain"] = [str(root / "chain11.yaml"), "-o", "-", "-q"]
    # Files that are not regular files, behind names a spec may use.
    os.mkfifo(root / "fifo.yaml")
    (root / "zero.yaml").symlink_to("/dev/zero")
    (root / "environ.yaml").symlink_to("/proc/self/environ")
    for name in ("fifo", "zero", "environ"):
        case(f"extends_{name}", f"nnspec: 1\nextends: {name}.yaml\n")
    cases["spec_fifo"] = [str(root / "fifo.yaml"), "-o", "-"]
    cases["spec_zero"] = [str(root / "zero.yaml"), "-o", "-"]

    env = {**os.environ, "NNSPEC_TEST_SECRET": SECRET}
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(cap=MEMORY_CAP), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.splitlines()[-1])
    return {name: (root, *results[name]) for name in cases}


def _error(bombs: dict, name: str) -> tuple[str, str]:
    """The first error line of a case, after checking it ended as a spec error should."""
    root, code, err, seconds = bombs[name]
    assert code == 2, (code, err[-500:])
    assert "Traceback" not in err
    assert seconds < 30, seconds  # a bound far above the real time, not a benchmark
    return str(root), err.splitlines()[0]


def test_params_resolve_in_linear_time(bombs: dict) -> None:
    root, line = _error(bombs, "params")
    assert line.startswith(f"{root}/params.yaml:1206:9: error: params.last: ")
    assert "unknown name 'nope'" in line


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("shared_sublists", "repetition too large"),
        ("nested_shared_sublists", "repetition too large"),
        ("string_repetition", "repetition too large"),
        ("format_width", "format width 999999999"),
        ("format_star", "'*' widths are not allowed"),
        ("format_many_fields", "would be longer than 100000 characters"),
        ("long_int_literal", "params.p: invalid expression"),
        ("big_int_literal", "an integer of more than 1024 bits"),
        ("big_power", "an integer of more than 1024 bits"),
        ("deep_sum", "is nested"),
        ("many_not", "is nested"),
        ("many_minus", "is nested"),
        ("deep_lists", "is nested"),
    ],
)
def test_expression_bombs_fail_at_the_param(bombs: dict, name: str, words: str) -> None:
    root, line = _error(bombs, name)
    assert line.startswith(f"{root}/{name}.yaml:6:6: error: params.p: ")
    assert words in line


def test_long_yaml_integer_is_located(bombs: dict) -> None:
    root, line = _error(bombs, "yaml_int_digits")
    assert line == (
        f"{root}/yaml_int_digits.yaml:5:6: error: an integer of 5000 digits; "
        "integers in a spec have at most 4300 digits"
    )


def test_extends_chain_shares_the_node_limit(bombs: dict) -> None:
    # 74,733 nodes a file: the seventh file read (chain5) crosses 500,000, at the
    # alias of its last line that does. Each file alone is within the limit.
    root, line = _error(bombs, "chain")
    assert line.startswith(f"{root}/chain5.yaml:7:51: error: the alias *b5_3 brings ")
    assert "this file and the 6 that extend it to more than 500000 YAML nodes" in line


@pytest.mark.parametrize(
    ("name", "kind"),
    [("fifo", "a FIFO"), ("zero", "a device"), ("environ", None)],
)
def test_extends_reads_only_regular_files(bombs: dict, name: str, kind: str) -> None:
    err = bombs[f"extends_{name}"][2]
    root, line = _error(bombs, f"extends_{name}")
    if kind is not None:
        assert line == (
            f"{root}/extends_{name}.yaml:2:10: error: cannot read the base spec: "
            f"the spec file {root}/{name}.yaml is {kind}, not a regular file"
        )
    else:  # a regular file that is not YAML: placed, never quoted
        assert line.startswith(f"{root}/environ.yaml:1:")
    assert SECRET not in err


@pytest.mark.parametrize(("name", "kind"), [("fifo", "a FIFO"), ("zero", "a device")])
def test_spec_file_must_be_regular(bombs: dict, name: str, kind: str) -> None:
    root, line = _error(bombs, f"spec_{name}")
    assert line == (
        f"{root}/{name}.yaml: error: the spec file {root}/{name}.yaml is {kind}, "
        "not a regular file"
    )


# In-process checks: cheap, nothing to cap.


def _load_error(path: Path, **kwargs: object) -> SpecError:
    with pytest.raises(SpecError) as info:
        nnspec.load(path, **kwargs)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!bool maybe", "'maybe' is not true or false, as its tag !!bool says"),
        ("!!int four", "'four' is not an integer, as its tag !!int says"),
        ("!!float half", "'half' is not a number, as its tag !!float says"),
        ("!!timestamp 2020-13-45", "the tag '!!timestamp' is not allowed"),
        ("!!binary aGk=", "the tag '!!binary' is not allowed"),
        ("!!python/object:os.system x", "the tag '!!python/object:os.system'"),
        ("!custom x", "the tag '!custom' is not allowed"),
    ],
)
def test_yaml_tags_are_located(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(HEAD + f"doc: {value}\n", encoding="utf-8")
    err = _load_error(path)
    assert (err.line, err.column) == (5, 6)
    assert message in err.message


def test_plain_date_is_text(tmp_path: Path) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(HEAD + "params: {day: 2020-13-45}\n", encoding="utf-8")
    assert nnspec.load(path).params == {"day": "2020-13-45"}


def test_missing_spec_has_no_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nnspec.cli import compile_main, main

    path = tmp_path / "absent.yaml"
    err = _load_error(path)
    assert str(err) == f"{path}: error: no such spec file: {path}"
    for run in (
        lambda: compile_main([str(path)]),
        lambda: main(["summary", str(path)]),
        lambda: main(["graph", str(path)]),
    ):
        assert run() == 2
        assert capsys.readouterr().err.strip() == (
            f"{path}: error: no such spec file: {path}"
        )


def test_directory_and_nul(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").mkdir()
    spec = tmp_path / "net.yaml"
    spec.write_text("nnspec: 1\nextends: base.yaml\n", encoding="utf-8")
    err = _load_error(spec)
    assert (err.line, err.column) == (2, 10)
    assert err.message.endswith("base.yaml is a directory, not a regular file")
    spec.write_text('nnspec: 1\nextends: "a\\0b.yaml"\n', encoding="utf-8")
    err = _load_error(spec)
    assert (err.line, err.column, err.message) == (
        2,
        10,
        "the extends path contains a NUL character",
    )


def test_extends_names_only_yaml_files(tmp_path: Path) -> None:
    (tmp_path / "creds").write_text(f"token: {SECRET}\n", encoding="utf-8")
    spec = tmp_path / "net.yaml"
    for target in ("creds", "/proc/self/environ", "../../etc/passwd"):
        spec.write_text(f"nnspec: 1\nextends: {target}\n", encoding="utf-8")
        err = _load_error(spec)
        assert (err.line, err.column) == (2, 10)
        assert "ending in .yaml or .yml" in err.message
        assert SECRET not in err.render()


def test_base_that_is_not_a_spec_is_not_quoted(tmp_path: Path) -> None:
    (tmp_path / "notes.yaml").write_text(f"x: [{SECRET}\n", encoding="utf-8")
    (tmp_path / "text.yaml").write_text(f"{SECRET} and more\n", encoding="utf-8")
    spec = tmp_path / "net.yaml"
    spec.write_text("nnspec: 1\nextends: notes.yaml\n", encoding="utf-8")
    err = _load_error(spec)
    assert err.path == str(tmp_path / "notes.yaml") and err.line == 1
    assert SECRET not in err.render()
    spec.write_text("nnspec: 1\nextends: text.yaml\n", encoding="utf-8")
    err = _load_error(spec)
    assert (err.line, err.column) == (2, 10)
    assert (
        err.message
        == "the base text.yaml is not a spec: its YAML is not a mapping of keys"
    )
    assert SECRET not in err.render()


def test_confine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "shared.yaml").write_text(HEAD, encoding="utf-8")
    spec = project / "net.yaml"
    spec.write_text("nnspec: 1\nextends: ../shared.yaml\n", encoding="utf-8")
    assert nnspec.load(spec).name == "Net"  # leaving the folder is allowed by default
    err = _load_error(spec, root=project)
    assert (err.line, err.column) == (2, 10)
    assert f"{tmp_path}/shared.yaml is outside {project}" in err.message
    (project / "link.yaml").symlink_to(tmp_path / "shared.yaml")
    spec.write_text("nnspec: 1\nextends: link.yaml\n", encoding="utf-8")
    assert "is outside" in _load_error(spec, root=project).message
    from nnspec.cli import main

    assert main(["compile", "--confine", str(spec), "-o", "-"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith(f"{spec}:2:10: error: cannot read the base spec: ")
    assert "Traceback" not in stderr
    assert nnspec.load(spec).name == "Net"  # --confine held for that command only


def test_confine_weights(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    spec = project / "net.yaml"
    spec.write_text(
        "nnspec: 1\nname: Net\ninputs: {x: [4]}\n"
        "layers: [{op: Linear, out_features: 2}]\n"
        "weights: {path: ../w.safetensors}\n",
        encoding="utf-8",
    )
    built = nnspec.load(spec, root=project)
    with pytest.raises(SpecError) as info:
        built.build()
    assert info.value.line == 5
    assert "is outside" in info.value.message
    assert not (tmp_path / "w.safetensors").exists()


def test_weights_read_only_regular_files(tmp_path: Path) -> None:
    from nnspec.runtime.weights import WeightsError, read_tensors

    os.mkfifo(tmp_path / "w.pt")
    (tmp_path / "z.safetensors").symlink_to("/dev/zero")
    with pytest.raises(WeightsError, match="is a FIFO, not a regular file"):
        read_tensors(tmp_path / "w.pt")
    with pytest.raises(WeightsError, match="is a device, not a regular file"):
        read_tensors(tmp_path / "z.safetensors")
    with pytest.raises(WeightsError, match="is a directory"):
        read_tensors(tmp_path)
    with pytest.raises(WeightsError, match="NUL"):
        read_tensors("a\0b.pt")
