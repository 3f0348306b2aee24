"""Command-line conventions: --version everywhere, '-' for standard input and output,
a description in every subcommand's help, the schema and starter-spec commands, and
the core install that compiles without the training extras."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nnspec
from nnspec.cli import SUBCOMMANDS, main
from nnspec.scaffold import schema_path

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "examples" / "lenet.yaml"


def run(*argv: str, stdin: str | None = None, cwd: Path | None = None):
    """The console command in a fresh interpreter, as a user runs it."""
    command, *rest = argv
    code = (
        "import sys; from nnspec.cli import compile_main, main; "
        f"sys.argv[0] = {command!r}; "
        f"raise SystemExit({'compile_main' if command == 'compile-model' else 'main'}())"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *rest],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.parametrize(
    "command", ["compile-model", *(f"nnspec {c}" for c in SUBCOMMANDS)]
)
def test_every_command_has_version_and_a_description(command, capsys):
    argv = command.split()[1:]
    entry = nnspec.cli.compile_main if command == "compile-model" else main
    with pytest.raises(SystemExit) as done:
        entry([*argv, "--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"nnspec {nnspec.__version__}"
    with pytest.raises(SystemExit):
        entry([*argv, "--help"])
    help_text = capsys.readouterr().out
    _usage, _, rest = help_text.partition("\n\n")
    description = rest.splitlines()[0]
    assert description and not description.startswith(("positional", "options")), (
        help_text
    )


def test_compile_reads_standard_input_and_writes_standard_output(tmp_path):
    done = run("compile-model", "-", stdin=LENET.read_text(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "class LeNet(nn.Module):" in done.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written beside anything


def test_errors_in_standard_input_say_stdin():
    text = "nnspec: 1\nname: X\ninputs: {x: [4]}\nlayers:\n  - {op: Lineer, out_features: 3}\n"
    done = run("compile-model", "-", stdin=text)
    assert done.returncode == 2
    first = done.stderr.splitlines()[0]
    assert first.startswith("<stdin>:5:10: error: unknown op 'Lineer'"), done.stderr
    assert "Traceback" not in done.stderr


def test_graph_writes_text_formats_to_standard_output(capsys):
    assert main(["graph", str(LENET), "-o", "-"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph") and "conv1" in dot
    assert main(["graph", str(LENET), "-o", "-", "--format", "mmd"]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart") and "conv1" in mermaid
    assert main(["graph", str(LENET), "-o", "-", "--format", "svg"]) == 2
    assert "-o - writes a text format" in capsys.readouterr().err


def test_train_refuses_standard_input():
    done = run("nnspec", "train", "-", stdin=LENET.read_text())
    assert done.returncode == 2
    assert "reads a spec file, not standard input" in done.stderr


def test_schema_prints_the_shipped_schema(tmp_path, capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(schema_path().read_text(encoding="utf-8"))
    assert main(["schema", "--path"]) == 0
    assert Path(capsys.readouterr().out.strip()) == schema_path()
    target = tmp_path / "nnspec.schema.json"
    assert main(["schema", "-o", str(target)]) == 0
    assert json.loads(target.read_text()) == printed
    target.write_text("mine")
    assert main(["schema", "-o", str(target)]) == 2
    assert target.read_text() == "mine"


def test_init_writes_a_spec_that_compiles_and_never_overwrites(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "my_net"]) == 0
    text = (tmp_path / "my_net.yaml").read_text()
    assert (
        text.splitlines()[0]
        == f"# yaml-language-server: $schema={schema_path().as_posix()}"
    )
    spec = nnspec.load(tmp_path / "my_net.yaml")
    assert spec.name == "MyNet"
    assert spec.build()(__import__("torch").zeros(2, 16)).shape == (2, 10)
    (tmp_path / "my_net.yaml").write_text("mine")
    capsys.readouterr()
    assert main(["init", "my_net"]) == 2
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "my_net.yaml").read_text() == "mine"
    assert main(["init", "2fast"]) == 2
    assert not (tmp_path / "2fast.yaml").exists()


# The core install: what `pip install nnspec` brings, without the `train` extra.
# A None entry in sys.modules is how Python marks a module that cannot be imported:
# find_spec answers None and `import` raises, as when the package is not installed.
_WITHOUT_EXTRAS = textwrap.dedent(
    """
    import sys
    sys.modules["tensorboard"] = sys.modules["tqdm"] = None
    """
)


def test_the_core_install_compiles_and_training_names_its_extra(tmp_path):
    (tmp_path / "lenet.yaml").write_text(LENET.read_text())
    (tmp_path / "digits.yaml").write_text(
        (ROOT / "examples" / "digits.yaml").read_text()
    )
    code = _WITHOUT_EXTRAS + textwrap.dedent(
        """
        import nnspec
        from nnspec.cli import compile_main, main
        model = nnspec.load("lenet.yaml").build()
        assert compile_main(["lenet.yaml", "-q"]) == 0
        status = main(["train", "digits.yaml", "--out", "run"])
        print("status", status)
        from nnspec.runtime import Trainer, TrainError
        try:
            Trainer("digits.yaml", "run2")
        except TrainError as exc:
            print("trainer:", exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "lenet.py").exists()
    assert "status 1" in done.stdout
    assert "pip install 'nnspec[train]'" in done.stderr
    assert "trainer: training needs tensorboard (TensorBoard logs), tqdm" in done.stdout
    assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()


def test_an_allowed_custom_op_beside_the_spec_compiles_from_another_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "nnspec_beside_layers.py").write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "class Scale(nn.Module):\n"
        "    def __init__(self, factor: float = 2.0) -> None:\n"
        "        super().__init__()\n        self.factor = factor\n\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        "        return x * self.factor\n"
    )
    (folder / "net.yaml").write_text(
        "nnspec: 1\nname: Net\ninputs: {x: [4]}\n"
        "layers:\n  - {op: 'nnspec_beside_layers:Scale', factor: 3.0}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ["compile-model", str(folder / "net.yaml"), "-q"]
    refused = run(*args, cwd=elsewhere)
    assert refused.returncode == 2 and "not allowed" in refused.stderr
    done = run(*args, "--allow-import", "nnspec_beside_layers", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "import nnspec_beside_layers" in (folder / "net.py").read_text()
