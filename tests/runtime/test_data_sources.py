"""Tables (csv, parquet) and data functions or Dataset classes called with args."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from nnspec.runtime.data import DatasetSamples, TensorSamples
from nnspec.runtime.loop import Trainer
from tests.runtime.conftest import write_data
from tests.runtime.data_classes import Pairs
from tests.runtime.test_data import split_error, split_of

COLUMNS = ["a", "b", "c", "d", "e", "f"]


def write_csv(path: Path, rows: list[list[object]], header: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def table_rows(n: int = 20) -> tuple[torch.Tensor, torch.Tensor, list[list[object]]]:
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(1))
    label = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    rows = [[*(f"{v:.6f}" for v in x[i].tolist()), int(label[i])] for i in range(n)]
    return x, label, rows


def test_a_csv_table_gives_the_features_and_class_targets(tmp_path: Path) -> None:
    x, label, rows = table_rows()
    # The target column first, and an extra column the features leave out.
    write_csv(
        tmp_path / "t.csv",
        [[r[-1], *r[:-1], "7"] for r in rows],
        ["kind", *COLUMNS, "id"],
    )
    features = "[" + ", ".join(COLUMNS) + "]"
    split = split_of(
        tmp_path,
        f"data: {{source: {{csv: t.csv, target: kind, features: {features}}}}}\n",
    )
    assert isinstance(split.train, TensorSamples)
    assert split.train.arrays["x"].dtype == torch.float32
    assert torch.allclose(split.train.arrays["x"], x, atol=1e-6)
    assert split.train.arrays["label"].dtype == torch.int64
    assert torch.equal(split.train.arrays["label"], label)


def test_features_default_to_every_column_but_the_target(tmp_path: Path) -> None:
    x, _, rows = table_rows()
    write_csv(tmp_path / "t.csv", rows, [*COLUMNS, "kind"])
    split = split_of(tmp_path, "data: {source: {csv: t.csv, target: kind}}\n")
    assert torch.allclose(split.train.arrays["x"], x, atol=1e-6)


def test_an_unknown_column_is_named_with_a_suggestion(tmp_path: Path) -> None:
    write_csv(tmp_path / "t.csv", table_rows()[2], [*COLUMNS, "kind"])
    features = "[a, b, c, d, e, ff]"
    message = split_error(
        tmp_path,
        f"data: {{source: {{csv: t.csv, target: kind, features: {features}}}}}\n",
    )
    file = tmp_path / "t.csv"
    assert message == (
        f"14:71: {file} has no column 'ff'; did you mean 'f'? "
        "(it has a, b, c, d, e, f, kind)"
    )
    message = split_error(tmp_path, "data: {source: {csv: t.csv, target: knd}}\n")
    assert message.startswith(
        f"14:39: {file} has no column 'knd'; did you mean 'kind'?"
    )


def test_a_cell_that_is_not_a_number_is_named_by_line_and_column(
    tmp_path: Path,
) -> None:
    rows = table_rows()[2]
    rows[3][2] = "n/a"
    rows[5][0] = ""
    write_csv(tmp_path / "t.csv", rows, [*COLUMNS, "kind"])
    message = split_error(tmp_path, "data: {source: {csv: t.csv, target: kind}}\n")
    assert message == (
        f"14:24: line 5 of {tmp_path / 't.csv'}, column 'c': 'n/a' is not a finite "
        "number"
    )
    rows[3][2] = "1.5"
    write_csv(tmp_path / "t.csv", rows, [*COLUMNS, "kind"])
    message = split_error(tmp_path, "data: {source: {csv: t.csv, target: kind}}\n")
    assert message.endswith("column 'a': an empty cell is not a finite number")
    assert message.startswith("14:24: line 7 of")


def test_a_class_target_must_hold_whole_numbers(tmp_path: Path) -> None:
    rows = table_rows()[2]
    rows[2][-1] = "1.5"
    write_csv(tmp_path / "t.csv", rows, [*COLUMNS, "kind"])
    message = split_error(tmp_path, "data: {source: {csv: t.csv, target: kind}}\n")
    assert message == (
        f"14:24: row 3 of {tmp_path / 't.csv'}: target column 'kind' holds 1.5, not "
        "a class index (target_dtype int64)"
    )


def test_a_regression_target_is_float_shaped_like_the_output(tmp_path: Path) -> None:
    rows = table_rows()[2]
    rows = [[*r[:-1], f"{float(i) / 4}"] for i, r in enumerate(rows)]
    write_csv(tmp_path / "t.csv", rows, [*COLUMNS, "y"])
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "nnspec: 1\nname: Reg\ninputs: {x: [6]}\n"
        "layers:\n  - {op: Linear, name: head, out_features: 1}\n"
        "outputs: {value: head}\n"
        "train:\n"
        "  data: {source: {csv: t.csv, target: y}, batch_size: 4}\n"
        "  loss: {value: {op: MSELoss, target: y}}\n"
        "  steps: 2\n",
        encoding="utf-8",
    )
    import nnspec
    from nnspec.runtime.data import load_split
    from nnspec.runtime.settings import resolve_settings

    split = load_split(resolve_settings(nnspec.load(spec)), frozenset())
    y = split.train.arrays["y"]  # type: ignore[union-attr]
    assert y.dtype == torch.float32 and y.shape == (20, 1)
    assert y[:, 0].tolist() == [i / 4 for i in range(20)]


def test_a_parquet_table_reads_like_a_csv(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    x, label, _ = table_rows()
    table = {name: x[:, k].tolist() for k, name in enumerate(COLUMNS)}
    table["kind"] = label.tolist()
    parquet.write_table(pa.table(table), tmp_path / "t.parquet")
    split = split_of(tmp_path, "data: {source: {parquet: t.parquet, target: kind}}\n")
    assert torch.allclose(split.train.arrays["x"], x)
    assert torch.equal(split.train.arrays["label"], label)
    # A null cell is named by its row.
    table["b"] = [None if i == 4 else v for i, v in enumerate(table["b"])]
    parquet.write_table(pa.table(table), tmp_path / "t.parquet")
    message = split_error(
        tmp_path, "data: {source: {parquet: t.parquet, target: kind}}\n"
    )
    assert message == (
        f"14:28: row 5 of {tmp_path / 't.parquet'}, column 'b': an empty cell is not "
        "a finite number"
    )
    # Booleans are numbers (0 and 1); a missing one is named the same way.
    table["b"] = [i % 2 == 0 for i in range(20)]
    table["c"] = [None if i == 2 else True for i in range(20)]
    parquet.write_table(pa.table(table), tmp_path / "t.parquet")
    message = split_error(
        tmp_path, "data: {source: {parquet: t.parquet, target: kind}}\n"
    )
    assert message.endswith(
        "row 3 of " + str(tmp_path / "t.parquet") + ", column "
        "'c': an empty cell is not a finite number"
    )


def test_parquet_without_pyarrow_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    message = split_error(
        tmp_path, "data: {source: {parquet: t.parquet, target: kind}}\n"
    )
    assert message == (
        "14:28: reading Parquet files needs pyarrow: pip install 'nnspec[data]' "
        "(or pyarrow)"
    )


def test_keys_of_another_kind_of_source_are_refused(tmp_path: Path) -> None:
    write_data(tmp_path / "d.pt")
    message = split_error(tmp_path, "data: {source: {pt: d.pt, target: label}}\n")
    assert message == "14:29: target goes with a csv or parquet source, not pt"


def test_a_dataset_class_takes_args_and_tuple_items_by_position(
    tmp_path: Path,
) -> None:
    source = "{function: 'tests.runtime.data_classes:Pairs', args: {n: 24, seed: 3}}"
    split = split_of(tmp_path, f"data: {{source: {source}}}\n", ("tests",))
    assert isinstance(split.train, DatasetSamples) and len(split.train) == 24
    expected = Pairs(24, 3)
    assert split.train.items == ("x", "label")
    assert split.train.shapes == {"x": (6,), "label": ()}
    assert split.train.dtypes == {"x": torch.float32, "label": torch.int64}
    assert torch.equal(split.train.dataset[5][0], expected.x[5])
    # items: names the positions when they are in another order.
    source = (
        "{function: 'tests.runtime.data_classes:Pairs', args: {swap: true}, "
        "items: [label, x]}"
    )
    swapped = split_of(tmp_path, f"data: {{source: {source}}}\n", ("tests",))
    assert swapped.train.items == ("label", "x")  # type: ignore[union-attr]


def test_args_are_checked_against_the_signature(tmp_path: Path) -> None:
    source = "{function: 'tests.runtime.data_classes:Pairs', args: {count: 24}}"
    message = split_error(tmp_path, f"data: {{source: {source}}}\n", ("tests",))
    assert message.startswith("14:72: 'tests.runtime.data_classes:Pairs' cannot take")
    assert message.endswith("; it takes n, seed, swap")
    # Still only with the package allowed.
    message = split_error(tmp_path, f"data: {{source: {source}}}\n")
    assert message.startswith("14:29: data function 'tests.runtime.data_classes:Pairs'")
    assert "--allow-import tests" in message


def test_path_args_are_relative_to_the_spec(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    write_data(tmp_path / "parts" / "one.pt", 10, seed=1)
    write_data(tmp_path / "parts" / "two.pt", 6, seed=2)
    source = (
        "{function: 'tests.runtime.data_classes:from_files', "
        "args: {files: [parts/one.pt, parts/two.pt], scale: 2.0}, paths: [files]}"
    )
    split = split_of(tmp_path, f"data: {{source: {source}}}\n", ("tests",))
    assert len(split.train) == 16
    one = torch.load(tmp_path / "parts" / "one.pt", weights_only=True)
    assert torch.equal(split.train.arrays["x"][:10], one["x"] * 2)  # type: ignore[union-attr]
    # paths names args; an arg listed there must hold paths.
    wrong = source.replace("paths: [files]", "paths: [file]")
    message = split_error(tmp_path, f"data: {{source: {wrong}}}\n", ("tests",))
    assert message.endswith(
        "paths: 'file' is not one of the args; did you mean 'files'?"
    )
    wrong = source.replace("paths: [files]", "paths: [scale]")
    message = split_error(tmp_path, f"data: {{source: {wrong}}}\n", ("tests",))
    assert message.endswith(
        "args.scale is listed in paths, so it must be a path or a list of paths, "
        "not float"
    )


def test_tuple_items_train_and_a_bad_item_is_named(tmp_path: Path) -> None:
    from tests.runtime.conftest import TINY_MODEL

    spec = tmp_path / "tiny.yaml"
    body = (
        "train:\n"
        "  data:\n"
        "    source: {function: 'tests.runtime.data_classes:WithABadItem', "
        "args: {bad: BAD}}\n"
        "    batch_size: 8\n"
        "    shuffle: false\n"
        "  loss: {logits: {op: CrossEntropyLoss, target: label}}\n"
        "  steps: 4\n"
    )
    spec.write_text(TINY_MODEL + body.replace("BAD", "100"), encoding="utf-8")
    result = Trainer(spec, tmp_path / "good", allow_imports=["tests"], progress=False)
    assert result.fit().step == 4
    spec.write_text(TINY_MODEL + body.replace("BAD", "19"), encoding="utf-8")
    from nnspec.runtime.errors import TrainError

    trainer = Trainer(spec, tmp_path / "bad", allow_imports=["tests"], progress=False)
    with pytest.raises(TrainError) as info:
        trainer.fit()
    assert str(info.value) == (
        "the training dataset of tests.runtime.data_classes:WithABadItem: item 19: "
        "'x' has shape [4], but every item's 'x' has shape [6]; training stopped "
        "before the step that would use it"
    )
    # The steps before the bad batch were taken and checkpointed as usual.
    assert json.loads((tmp_path / "bad" / "split.json").read_text())["val"] is None


def test_items_name_each_input_and_target_once(
    tmp_path: Path,
) -> None:
    source = "{function: 'tests.runtime.data_classes:Pairs', items: [x, label, x]}"
    message = split_error(tmp_path, f"data: {{source: {source}}}\n", ("tests",))
    assert message == "14:83: items: 'x' is named twice"
    source = "{function: 'tests.runtime.data_classes:Pairs', items: [x]}"
    message = split_error(tmp_path, f"data: {{source: {source}}}\n", ("tests",))
    assert message == "14:72: items does not name 'label'"


def test_val_and_test_may_be_sources_of_their_own(tmp_path: Path) -> None:
    write_data(tmp_path / "d.pt", 30)
    write_data(tmp_path / "t.pt", 12, seed=5)
    val = "{function: 'tests.runtime.data_classes:Pairs', args: {n: 16}}"
    split = split_of(
        tmp_path,
        f"data: {{source: {{pt: d.pt}}, val: {val}, test: {{pt: t.pt}}}}\n",
        ("tests",),
    )
    assert (len(split.train), len(split.val), len(split.test)) == (30, 16, 12)  # type: ignore[arg-type]
    assert split.held_out["val"] == {"from": "data.val", "samples": 16}
    assert split.held_out["test"] == {"from": "data.test", "samples": 12}
    message = split_error(
        tmp_path, "data: {source: {pt: d.pt}, test: {pt: t.pt}, test_fraction: 0.1}\n"
    )
    assert message == "14:48: give test or test_fraction, not both"
