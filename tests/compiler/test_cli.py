"""``compile-model`` and ``nnspec compile``: files, summaries, errors, and a generated
file that runs where nnspec is not importable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

import nnspec
from nnspec.cli import compile_main, main
from tests.compiler import handwritten
from tests.compiler.examples import num_params
from tests.conftest import EXAMPLES

BIN = Path(sys.executable).parent


def _command(script: str, entry: str) -> list[str]:
    """The installed console script, else the same entry point through this Python."""
    exe = shutil.which(script, path=str(BIN))
    if exe:
        return [exe]
    return [sys.executable, "-c", f"import sys, nnspec.cli as c; sys.exit(c.{entry}())"]


def _run(
    args: list[str], cwd: Path, hash_seed: str = "0"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def unet_dir(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLES / "unet.yaml", tmp_path / "unet.yaml")
    return tmp_path


def test_compile_model_writes_the_same_file_every_time(unet_dir: Path) -> None:
    first = _run([*_command("compile-model", "compile_main"), "unet.yaml"], unet_dir)
    assert first.returncode == 0, first.stderr
    target = unet_dir / "unet.py"
    written = target.read_bytes()
    summary = first.stdout.splitlines()
    assert summary[0].startswith("UNet: ")
    assert f"{num_params(handwritten.UNet()):,} parameters" in summary[0]
    assert "  input  x: [B,3,64,64]" in summary
    assert "  output outc: [B,2,64,64]" in summary
    assert summary[-1] == "wrote unet.py"

    # Another process, with another hash seed, through the umbrella command.
    target.unlink()
    second = _run([*_command("nnspec", "main"), "compile", "unet.yaml"], unet_dir, "7")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert target.read_bytes() == written
    assert written.decode("utf-8") == nnspec.load(unet_dir / "unet.yaml").source()
    assert written.decode("utf-8").count("class DoubleConv(") == 1


RUN_WITHOUT_NNSPEC = """\
import sys
sys.modules["nnspec"] = None  # the generated file must not need nnspec
import torch
from unet import UNet
try:
    import nnspec
except ImportError:
    pass
else:
    raise SystemExit("nnspec was importable")
torch.manual_seed(0)
model = UNet().eval()
x = torch.randn(1, 3, 32, 48)
with torch.no_grad():
    y = model(x)
torch.save({"x": x, "y": y}, "result.pt")
print(tuple(y.shape))
"""


def test_generated_file_runs_without_nnspec(unet_dir: Path) -> None:
    assert compile_main([str(unet_dir / "unet.yaml"), "-q"]) == 0
    result = _run([sys.executable, "-c", RUN_WITHOUT_NNSPEC], unet_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 2, 32, 48)"
    saved = torch.load(unet_dir / "result.pt", weights_only=True)
    # The same seed gives nnspec's in-memory class the same weights, hence the same output.
    torch.manual_seed(0)
    model = nnspec.load(unet_dir / "unet.yaml").build().eval()
    with torch.no_grad():
        assert_close(model(saved["x"]), saved["y"])


def test_output_to_stdout(unet_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compile_main([str(unet_dir / "unet.yaml"), "-o", "-"]) == 0
    out = capsys.readouterr().out
    assert out == nnspec.load(unet_dir / "unet.yaml").source()
    assert not (unet_dir / "unet.py").exists()


def test_param_override(unet_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(unet_dir / "unet.yaml")
    target = unet_dir / "small.py"
    status = compile_main([spec, "-p", "base=8", "-p", "classes=3", "-o", str(target)])
    assert status == 0
    source = target.read_text(encoding="utf-8")
    assert source == nnspec.load(spec, params={"base": 8, "classes": 3}).source()
    assert source != nnspec.load(spec).source()
    out = capsys.readouterr().out
    assert "  output outc: [B,3,64,64]" in out.splitlines()


def test_unknown_param(unet_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(unet_dir / "unet.yaml"), "-p", "bas=8"]) == 2
    err = capsys.readouterr().err
    assert "unknown param 'bas'" in err
    assert "(did you mean 'base'?)" in err
    assert not (unet_dir / "unet.py").exists()


BAD_SPEC = """\
nnspec: 1
name: Bad
inputs: {x: [3, 8, 8]}
layers:
  - {op: Conv2d, out_channels: 4, kernal_size: 3}
  - {op: Linear, out_features: 2}
"""


def test_bad_spec_exits_2_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD_SPEC, encoding="utf-8")
    result = _run([*_command("compile-model", "compile_main"), "bad.yaml"], tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    column = BAD_SPEC.splitlines()[4].index("kernal_size") + 1
    assert lines[0].startswith(f"bad.yaml:5:{column}: error: ")
    assert "(did you mean 'kernel_size'?)" in lines[0]
    assert lines[1].strip() == BAD_SPEC.splitlines()[4].strip()
    assert lines[2].strip() == "^"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "bad.py").exists()


def test_yaml_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("nnspec: 1\nname: Broken\nlayers: [ReLU\n", encoding="utf-8")
    assert main(["compile", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{spec}:")
    assert ": error: " in err.splitlines()[0]
    assert "Traceback" not in err


def test_missing_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compile_main([str(tmp_path / "none.yaml")]) == 2
    assert "no such spec file" in capsys.readouterr().err


def test_param_values_are_read_as_the_spec_reads_them() -> None:
    from nnspec.cli import parse_params

    assert parse_params(["lr=1e-3", "n=3", "act=relu", "sizes=[1, 2]", "on=true"]) == {
        "lr": 0.001,
        "n": 3,
        "act": "relu",
        "sizes": [1, 2],
        "on": True,
    }
