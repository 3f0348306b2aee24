"""The documentation runs as written: every shell and Python block of README.md and
docs/*.md, in the order of its file, in a fresh folder.

Each file gets its own temporary folder, the current directory of its commands,
holding what the docs assume beside them: a copy of examples/ (with its data), the
error corpus tests/errors/cases/ and an empty docs/. Shell blocks are ```bash,
```sh, ```shell and ```console (in a console block, the lines that start with
``$ `` are commands, the others their output, which is not compared). A command
must exit with status 0; ``&&`` joins commands as in a shell.

What the test changes or leaves out, and why:

- ``nnspec train`` commands (also under torchrun) run with ``--set epochs=1``
  appended, and ``nnspec profile`` commands with ``--steps 1``: as documented they
  would take minutes.
- ``nnspec`` and ``compile-model`` commands run in this process, through the same
  ``main`` functions as the console scripts (a new interpreter for each would cost
  more than the command); ``--nproc``, ``torchrun`` and ``python`` commands run as
  processes.
- A block right after a line ``<!-- docs-run: skip: REASON -->`` is not run (the
  reason says what it needs that is absent here: several machines, a GPU, more
  processes than the two of the README); a skipped Python block must still compile.
- Commands in SKIPPED below: installing packages, the test suite itself, servers.
- Drawings to .svg, .png or .pdf need Graphviz's ``dot``: skipped where it is absent.

``python`` is the interpreter running the tests, and ``nnspec``, ``compile-model``
and ``torchrun`` run with it. A failure names the file, the line of the block and
the command, with what it printed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
SKIP_MARK = re.compile(r"^\s*<!--\s*docs-run:\s*skip:\s*(?P<reason>.*?)\s*-->\s*$")

#: Commands not run, by their first words, and why.
SKIPPED = {
    ("pip", "install"): "installs packages",
    ("python", "-m", "pip", "install"): "installs packages",
    ("python", "-m", "pytest"): "the test suite itself",
    ("tensorboard",): "a server",
}
#: How long one command may take before it counts as hung.
COMMAND_TIMEOUT = 600
#: Appended to training and profiling commands.
SHORT_TRAINING = ["--set", "epochs=1"]
SHORT_PROFILE = ["--steps", "1"]
#: Shell syntax the runner does not take apart: a docs command using it fails loudly.
OPERATORS = {"|", "||", ";", ">", ">>", "<", "&", "2>", "2>&1"}


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, from 1
    kind: str  # "shell" or "python"
    lines: list[str]
    skip: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The shell and Python blocks of a Markdown file, in order."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, language = match.group(1), match.group(2)
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"),
            len(lines),
        )
        body = [line[len(indent) :] for line in lines[i + 1 : end]]
        mark = SKIP_MARK.match(lines[i - 1]) if i > 0 else None
        kind = "python" if language == "python" else language
        if language in SHELL:
            kind = "shell"
            if language == "console":
                body = _console_commands(body)
        if kind in ("shell", "python"):
            skip = mark.group("reason") if mark else None
            found.append(Block(path, i + 1, kind, body, skip))
        i = end + 1
    return found


def _console_commands(lines: list[str]) -> list[str]:
    """The commands of a console block: ``$ `` lines and their continuations."""
    commands, going_on = [], False
    for line in lines:
        if line.startswith("$ ") or going_on:
            commands.append(line[2:] if line.startswith("$ ") else line)
            going_on = line.rstrip().endswith("\\")
    return commands


def commands(block: Block) -> list[list[str]]:
    """Each command of a shell block, as words (comments and continuations gone;
    ``a && b`` is two commands)."""
    text = "\n".join(block.lines).replace("\\\n", " ")
    result = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        part: list[str] = []
        for word in [*words, "&&"]:
            if word != "&&":
                part.append(word)
            elif part:
                result.append(part)
                part = []
    return result


def _skip_reason(words: list[str]) -> str | None:
    for start, reason in SKIPPED.items():
        if tuple(words[: len(start)]) == start:
            return reason
    if words[:2] == ["nnspec", "graph"] and shutil.which("dot") is None:
        drawn = [w for w in words if Path(w).suffix in (".svg", ".png", ".pdf")]
        if drawn:
            return "Graphviz's dot is not installed"
    return None


def _trains(words: list[str]) -> bool:
    return any(words[i : i + 2] == ["nnspec", "train"] for i in range(len(words)))


def _shims(folder: Path) -> Path:
    """A bin folder whose python, nnspec, compile-model and torchrun are this
    interpreter's."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    python = shlex.quote(sys.executable)
    scripts = {
        "python": f'exec {python} "$@"',
        "nnspec": f'exec {python} -m nnspec "$@"',
        "compile-model": (
            f"exec {python} -c "
            "'import sys; from nnspec.cli import compile_main; "
            'sys.exit(compile_main())\' "$@"'
        ),
        "torchrun": f'exec {python} -m torch.distributed.run "$@"',
    }
    for name, line in scripts.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{line}\n", encoding="utf-8")
        script.chmod(0o755)
    return bin_dir


def _workspace(tmp_path: Path) -> Path:
    """A folder laid out as the docs assume (relative paths as in the repository)."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(
        ROOT / "examples",
        work / "examples",
        ignore=shutil.ignore_patterns("*.py", "__pycache__"),
    )
    shutil.copytree(ROOT / "tests" / "errors" / "cases", work / "tests/errors/cases")
    (work / "docs").mkdir()
    return work


def _in_process(words: list[str]) -> int:
    from nnspec.cli import compile_main, main

    entry = main if words[0] == "nnspec" else compile_main
    try:
        return entry(words[1:])
    except SystemExit as exc:  # argparse
        return exc.code if isinstance(exc.code, int) else 1


def _run_shell(
    block: Block,
    work: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for words in commands(block):
        shown = shlex.join(words)
        assert not OPERATORS & set(words), (
            f"{block.where}: `{shown}` uses shell syntax this test does not run; "
            "split it into commands or extend tests/test_docs_run.py"
        )
        if _skip_reason(words):
            continue
        if _trains(words):
            words = [*words, *SHORT_TRAINING]
        if words[:2] == ["nnspec", "profile"]:
            words = [*words, *SHORT_PROFILE]
        if words[0] in ("nnspec", "compile-model") and "--nproc" not in words:
            monkeypatch.chdir(work)
            capsys.readouterr()
            status = _in_process(words)
            out, err = capsys.readouterr()
            if status != 0:
                pytest.fail(
                    f"{block.where}: shell block, `{shlex.join(words)}` exited with "
                    f"status {status}:\n{out}{err}"
                )
            continue
        try:
            result = subprocess.run(
                words,
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"{block.where}: `{shlex.join(words)}` ran for too long")
        except FileNotFoundError:
            pytest.fail(f"{block.where}: `{shown}`: no program {words[0]!r}")
        if result.returncode != 0:
            pytest.fail(
                f"{block.where}: shell block, `{shlex.join(words)}` exited with "
                f"status {result.returncode}:\n{result.stdout}{result.stderr}"
            )


def _run_python(block: Block, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = textwrap.dedent("\n".join(block.lines))
    code = compile(source, block.where, "exec")
    monkeypatch.chdir(work)
    try:
        exec(code, {"__name__": "__docs__"})
    except Exception as exc:
        pytest.fail(
            f"{block.where}: Python block raised {type(exc).__name__}: {exc}\n{source}"
        )


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_doc_runs_as_written(
    doc: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = _workspace(tmp_path)
    bin_dir = _shims(tmp_path)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]),
    }
    env.pop("PYTHONPATH", None)  # the docs' commands see nnspec as a user does
    for block in blocks(doc):
        if block.skip is not None:
            assert block.skip, f"{block.where}: a skipped block must say why"
            if block.kind == "python":
                compile("\n".join(block.lines), block.where, "exec")
            continue
        if block.kind == "shell":
            _run_shell(block, work, env, monkeypatch, capsys)
        else:
            _run_python(block, work, monkeypatch)


def test_the_docs_have_blocks_to_run() -> None:
    found = [b for doc in DOCS for b in blocks(doc)]
    assert sum(b.kind == "shell" and b.skip is None for b in found) >= 8
    assert sum(b.kind == "python" and b.skip is None for b in found) >= 5
    readme = [c for b in blocks(ROOT / "README.md") for c in commands(b)]
    assert ["nnspec", "train", "examples/digits.yaml"] in readme


def test_console_blocks_hold_commands_and_output() -> None:
    block = Block(
        ROOT / "README.md",
        1,
        "shell",
        _console_commands(
            ["$ nnspec a \\", "    --b c", "output", "$ nnspec d  # note", "more"]
        ),
    )
    assert commands(block) == [["nnspec", "a", "--b", "c"], ["nnspec", "d"]]


def test_readme_and_bench_agree_on_the_run_time() -> None:
    import bench.__main__ as bench_main

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    said = re.search(r"about (\w+) minutes on a 2-core CPU", readme)
    helped = re.search(r"full run takes about (\w+) minutes", bench_main.__doc__ or "")
    assert said and helped
    assert said.group(1) == helped.group(1)
