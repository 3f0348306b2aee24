"""Imports point down the stages only (spec <- compiler <- runtime, inspection <- nnspec),
with no cycle; and building a model loads none of the training runtime."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.layering import collect, cycles, package_dirs, upward

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_goes_up_a_stage() -> None:
    problems = upward(collect(package_dirs(ROOT / "pyproject.toml")), ROOT)
    assert not problems, "imports against the stages:\n" + "\n".join(problems)


def test_no_import_cycle() -> None:
    found = cycles(collect(package_dirs(ROOT / "pyproject.toml")))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_building_a_model_loads_no_runtime() -> None:
    code = (
        "import sys, nnspec\n"
        "nnspec.load('examples/unet.yaml').build()\n"
        "print([m for m in sys.modules if m.startswith('nnspec.runtime')])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_runtime_names_still_load_on_first_use() -> None:
    code = (
        "import sys, nnspec.runtime as r\n"
        "assert 'nnspec.runtime.loop' not in sys.modules\n"
        "print(r.Trainer.__module__, r.FitResult.__name__, r.save_checkpoint.__module__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [
        "nnspec.runtime.loop",
        "FitResult",
        "nnspec.runtime.checkpoint",
    ]


# The checker itself, on small made-up trees.


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        file = tmp_path / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(textwrap.dedent(text), encoding="utf-8")
    return {
        "nnspec": tmp_path / "top",
        "nnspec.spec": tmp_path / "spec",
        "nnspec.compiler": tmp_path / "compiler",
        "nnspec.compiler.passes": tmp_path / "compiler" / "passes",
        "nnspec.runtime": tmp_path / "runtime",
        "nnspec.inspection": tmp_path / "inspection",
    }


def _empty_packages() -> dict[str, str]:
    return {
        f"{folder}/__init__.py": ""
        for folder in (
            "top",
            "spec",
            "compiler",
            "compiler/passes",
            "runtime",
            "inspection",
        )
    }


def test_checker_finds_an_upward_import(tmp_path: Path) -> None:
    dirs = _tree(
        tmp_path,
        {
            **_empty_packages(),
            "top/api.py": "X = 1\n",
            "spec/ok.py": "from .errors import E\n",
            "spec/errors.py": "E = 1\n",
            # relative, two levels up, inside a function: still an upward import
            "compiler/passes/lower.py": "def f():\n    from ...runtime.loop import T\n",
            "runtime/loop.py": "import os\n\nfrom nnspec.api import X\nT = 1\n",
            "runtime/typed.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from nnspec import api\n"
            ),
            "inspection/views.py": "from nnspec.runtime import loop\n",
            "top/cli.py": "from nnspec.runtime.loop import T\n",
        },
    )
    problems = upward(collect(dirs), tmp_path)
    assert problems == [
        "compiler/passes/lower.py:2: nnspec.compiler.passes.lower (stage 1) imports "
        "nnspec.runtime.loop (stage 2)",
        "runtime/loop.py:3: nnspec.runtime.loop (stage 2) imports nnspec.api (stage 3)",
        "runtime/typed.py:3: nnspec.runtime.typed (stage 2) imports nnspec.api (stage 3)",
        "inspection/views.py:1: nnspec.inspection.views (stage 2) imports "
        "nnspec.runtime.loop (stage 2)",
    ]


def test_checker_finds_a_cycle(tmp_path: Path) -> None:
    dirs = _tree(
        tmp_path,
        {
            **_empty_packages(),
            "runtime/a.py": "from . import b\n",
            "runtime/b.py": "from .c import thing\n",
            "runtime/c.py": "import nnspec.runtime.a\nthing = 1\n",
            # a function-level import closes no cycle: it runs later
            "runtime/d.py": "from .e import y\nx = 1\n",
            "runtime/e.py": "y = 1\ndef f():\n    from .d import x\n",
        },
    )
    assert cycles(collect(dirs)) == [
        [
            "nnspec.runtime.a",
            "nnspec.runtime.b",
            "nnspec.runtime.c",
            "nnspec.runtime.a",
        ]
    ]


def test_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    dirs = _tree(
        tmp_path,
        {
            **_empty_packages(),
            "spec/errors.py": "E = 1\n",
            "compiler/loaded.py": "from nnspec.spec.errors import E\n",
            "runtime/loop.py": "from ..compiler import loaded\nfrom ..spec import errors\n",
            "top/api.py": "from .runtime.loop import *\nfrom .compiler.loaded import E\n",
        },
    )
    edges = collect(dirs)
    assert {(e.source, e.target) for e in edges} == {
        ("nnspec.compiler.loaded", "nnspec.spec.errors"),
        ("nnspec.runtime.loop", "nnspec.compiler.loaded"),
        ("nnspec.runtime.loop", "nnspec.spec.errors"),
        ("nnspec.api", "nnspec.runtime.loop"),
        ("nnspec.api", "nnspec.compiler.loaded"),
    }
    assert upward(edges, tmp_path) == [] and cycles(edges) == []
