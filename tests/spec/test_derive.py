"""Derived specs: overrides, graph edits, and errors in the right file at the right line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import nnspec
from nnspec.spec import SpecError

BASE = """\
nnspec: 1
name: Base
params: {classes: 3, width: 8}
inputs: {x: [4]}
layers:
  - {op: Linear, name: body, out_features: "${width}"}
  - ReLU
  - {op: Linear, name: fc, out_features: "${classes}"}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        nnspec.load(path)
    return info.value


def test_overrides_and_edits(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    derived = write(
        tmp_path,
        "derived.yaml",
        "nnspec: 1\nextends: base.yaml\nname: Derived\nparams: {classes: 5}\n"
        "insert_before:\n  fc: {op: Dropout, p: 0.1}\n"
        "replace:\n  relu: GELU\n",
    )
    spec = nnspec.load(derived)
    names = [name for name, _ in spec.build().named_children()]
    assert names == ["body", "relu", "dropout", "fc"]
    assert spec.params == {"classes": 5, "width": 8}
    assert "self.relu = nn.GELU()" in spec.source()
    # The model's class takes the params, the overridden values its defaults.
    assert "self.fc = nn.Linear(width, classes)" in spec.source()
    assert "classes: int = 5, width: int = 8" in spec.source()
    fc = spec.build().fc
    assert (fc.in_features, fc.out_features) == (8, 5)


def test_chains_of_extends(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    write(tmp_path, "mid.yaml", "nnspec: 1\nextends: base.yaml\nparams: {width: 16}\n")
    leaf = write(tmp_path, "leaf.yaml", "nnspec: 1\nextends: mid.yaml\nname: Leaf\n")
    spec = nnspec.load(leaf)
    assert spec.name == "Leaf" and spec.params == {"classes": 3, "width": 16}


def test_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "nnspec: 1\nextends: b.yaml\n")
    b = write(tmp_path, "b.yaml", "nnspec: 1\nextends: a.yaml\n")
    err = error_of(b)
    assert "extends makes a cycle: b.yaml -> a.yaml -> b.yaml" in err.message


def test_unknown_node_in_an_edit_points_at_the_derived_file(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    derived = write(
        tmp_path, "derived.yaml", "nnspec: 1\nextends: base.yaml\nremove: [relu, fcc]\n"
    )
    err = error_of(derived)
    assert (err.path, err.line, err.column) == (str(derived), 3, 16)
    assert "base.yaml has no node 'fcc'" in err.message
    assert "did you mean 'fc'?" in err.message


def test_error_in_a_base_node_points_into_the_base_file(tmp_path: Path) -> None:
    base = write(
        tmp_path, "base.yaml", BASE.replace("ReLU", "{op: ReLU, inplce: true}")
    )
    derived = write(tmp_path, "derived.yaml", "nnspec: 1\nextends: base.yaml\n")
    err = error_of(derived)
    assert (err.path, err.line, err.column) == (str(base), 7, 16)
    assert "inplce" in err.message
    assert err.render().splitlines()[1].strip() == "- {op: ReLU, inplce: true}"


def test_missing_base_file(tmp_path: Path) -> None:
    derived = write(tmp_path, "derived.yaml", "nnspec: 1\nextends: nowhere.yaml\n")
    err = error_of(derived)
    assert (err.line, err.column) == (2, 10)
    assert "cannot read the base spec" in err.message


def test_edits_need_extends(tmp_path: Path) -> None:
    spec = write(tmp_path, "s.yaml", BASE + "remove: [relu]\n")
    err = error_of(spec)
    assert (err.line, err.column) == (9, 1)
    assert "remove edits a base spec: it needs extends" in err.message


def test_generated_comments_name_the_file_of_each_node(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    derived = write(
        tmp_path,
        "derived.yaml",
        "nnspec: 1\nextends: base.yaml\ninsert_after:\n  fc: Sigmoid\n",
    )
    source = nnspec.load(derived).source()
    assert "# base.yaml:8  (B, 3)" in source
    assert "# derived.yaml:4  (B, 3)" in source


def test_weights_strict_and_per_node(tmp_path: Path) -> None:
    from nnspec.runtime.weights import save_weights

    base = write(tmp_path, "base.yaml", BASE)
    model = nnspec.load(base).build()
    save_weights(model, tmp_path / "base.safetensors")
    torch.save({"model": model.state_dict()}, tmp_path / "checkpoint.pt")
    derived = write(
        tmp_path,
        "derived.yaml",
        "nnspec: 1\nextends: base.yaml\nweights: {path: checkpoint.pt}\n",
    )
    loaded = nnspec.load(derived).build()
    torch.testing.assert_close(loaded.fc.weight, model.fc.weight)
    # A node's own weights, from a prefix of the file.
    per_node = write(
        tmp_path,
        "node.yaml",
        BASE.replace(
            '{op: Linear, name: body, out_features: "${width}"}',
            '{op: Linear, name: body, out_features: "${width}",'
            " weights: {path: base.safetensors, prefix: body}}",
        ),
    )
    built = nnspec.load(per_node).build()
    torch.testing.assert_close(built.body.weight, model.body.weight)
    # Strict loading of weights that do not fit is an error at the weights key.
    bad = write(
        tmp_path,
        "bad.yaml",
        "nnspec: 1\nextends: base.yaml\nparams: {classes: 4}\nweights: {path: base.safetensors}\n",
    )
    with pytest.raises(SpecError) as info:
        nnspec.load(bad).build()
    assert (info.value.line, info.value.column) == (4, 1)
    assert (
        "shape mismatch for fc.weight: model [4, 8], file [3, 8]" in info.value.message
    )
