"""Whole-module pickles: models built in memory by nnspec.load refuse at once, with
advice; their weights, copies, and classes written by compile-model pickle as usual."""

from __future__ import annotations

import copy
import io
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import nnspec
from nnspec.cli import compile_main
from tests.conftest import ROOT

SPEC = """\
nnspec: 1
name: Tiny
inputs: {x: [4]}
blocks:
  Mlp:
    params: {width: 4}
    layers:
      - {op: Linear, out_features: "${width}"}
      - ReLU
layers:
  - {op: Mlp, name: body, width: 6}
  - {op: Linear, name: head, out_features: 2}
"""


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Python in a fresh process (nothing of this one's sys.modules)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


def test_whole_model_pickle_fails_early_with_advice(spec_file: Path) -> None:
    model = nnspec.load(spec_file).build()
    for dump in (pickle.dumps, lambda m: torch.save(m, io.BytesIO())):
        with pytest.raises(pickle.PicklingError) as info:
            dump(model)
        message = str(info.value)
        assert "cannot pickle a whole Tiny built by nnspec.load" in message
        assert "model.state_dict()" in message and "compile-model" in message
    with pytest.raises(pickle.PicklingError, match="a whole Mlp"):
        pickle.dumps(model.body)  # block classes are guarded too


def test_copies_still_work(spec_file: Path) -> None:
    model = nnspec.load(spec_file).build()
    twin = copy.deepcopy(model)
    assert type(twin) is type(model) and twin.head is not model.head
    assert twin.head.weight is not model.head.weight
    x = torch.randn(3, 4)
    assert torch.equal(twin(x), model(x))
    with torch.no_grad():
        twin.head.weight.zero_()
    assert not torch.equal(twin(x), model(x))  # independent parameters
    shallow = copy.copy(model)
    assert shallow.head is model.head


def test_in_a_fresh_process(spec_file: Path, tmp_path: Path) -> None:
    # One process saves; another, with nothing of the first in memory, loads.
    assert compile_main([str(spec_file), "-o", str(tmp_path / "tiny_model.py")]) == 0
    saved = _run(
        f"""
        import pickle, torch, nnspec
        from tiny_model import Tiny
        model = nnspec.load({str(spec_file)!r}).build()
        torch.save(model.state_dict(), "weights.pt")
        torch.save(model(torch.ones(1, 4)), "out.pt")
        try:
            torch.save(model, "refused.pt")
        except pickle.PicklingError as exc:
            print("refused:", exc)
        plain = Tiny()
        torch.save(plain, "model.pt")  # the compiled file's class: a real module
        torch.save(plain(torch.ones(1, 4)), "plain_out.pt")
        """,
        tmp_path,
    )
    assert saved.returncode == 0, saved.stderr
    assert "refused: cannot pickle a whole Tiny" in saved.stdout
    loaded = _run(
        f"""
        import torch
        plain = torch.load("model.pt", weights_only=False)
        assert type(plain).__module__ == "tiny_model", type(plain)
        assert torch.equal(plain(torch.ones(1, 4)), torch.load("plain_out.pt"))
        import nnspec
        model = nnspec.load({str(spec_file)!r}).build(weights="weights.pt")
        assert torch.equal(model(torch.ones(1, 4)), torch.load("out.pt"))
        print("both loaded")
        """,
        tmp_path,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "both loaded" in loaded.stdout
