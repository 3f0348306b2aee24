"""Tables: a CSV file (read with the standard library) or a Parquet file (read
with pyarrow, when installed), a row per sample. The feature columns become the
input (float32, in the order given) and the target column the loss target: class
indices (int64) or values (float32)."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...spec.train import SourceSpec
from .base import ReaderBase, first_line, item_names, size_text, suggest

__all__ = ["TABLE_MAX_BYTES", "TableSources"]

#: The largest table file read (it is read into memory whole); checked first.
TABLE_MAX_BYTES = 1 << 31


class TableSources(ReaderBase):
    def table(self, source: SourceSpec, path: tuple, kind: str) -> dict[str, Tensor]:
        """{input: features, target: target column} of a csv or parquet source."""
        where = (*path, kind)
        file = self.resolve(getattr(source, kind))
        self.regular_file(file, where)
        size = os.stat(file).st_size
        if size > TABLE_MAX_BYTES:
            raise self.error(
                where,
                f"{file} is {size_text(size)}, over the limit of "
                f"{size_text(TABLE_MAX_BYTES)} for a table read into memory",
            )
        input_name, target_name = item_names(self, source.items, path, count=2)
        if input_name not in self.inputs:
            raise self.error(
                (*path, "items", 0),
                f"items: the features go to an input, and {input_name!r} is a target",
            )
        header = self.csv_header(file, where) if kind == "csv" else None
        if kind == "parquet":
            header = self.parquet_header(file, where)
        assert header is not None
        if source.target is None:
            raise self.error(
                path,
                f"a {kind} source needs target: the target column (of "
                f"{', '.join(header)})",
            )
        self.check_column(source.target, header, (*path, "target"), file)
        if source.features is None:
            features = [c for c in header if c != source.target]
        else:
            features = list(source.features)
            for k, name in enumerate(features):
                at = (*path, "features", k)
                self.check_column(name, header, at, file)
                if name == source.target:
                    raise self.error(at, f"{name!r} is the target column")
                if features.index(name) != k:
                    raise self.error(at, f"column {name!r} is named twice")
        if not features:
            raise self.error(path, f"{file} has no column but the target")
        wanted = [*features, source.target]
        if kind == "csv":
            values = self.csv_values(file, header, wanted, where)
        else:
            values = self.parquet_values(file, wanted, where)
        n = values.shape[0]
        if not n:
            raise self.error(where, f"{file} holds no rows")
        dtype = source.target_dtype or (
            "int64" if self.is_class_index(target_name) else "float32"
        )
        target = values[:, -1]
        if dtype == "int64":
            whole = np.floor(target) == target
            if not whole.all():
                row = int(np.argmin(whole))
                raise self.error(
                    where,
                    f"row {row + 1} of {file}: target column {source.target!r} holds "
                    f"{target[row]:g}, not a class index (target_dtype int64)",
                )
            labels = torch.from_numpy(target.astype(np.int64))
        else:
            labels = torch.from_numpy(target.astype(np.float32))
            term = self.targets.get(target_name)
            if term is not None and self.sample_shape(term.output) == [1]:
                labels = labels.unsqueeze(1)  # as the output: one value a sample
        return {
            input_name: torch.from_numpy(values[:, :-1].astype(np.float32)),
            target_name: labels,
        }

    def check_column(self, name: str, header: list[str], at: tuple, file: Path) -> None:
        if name not in header:
            raise self.error(
                at,
                f"{file} has no column {name!r}{suggest(name, header)} (it has "
                f"{', '.join(header)})",
            )

    def csv_header(self, file: Path, where: tuple) -> list[str]:
        try:
            with open(file, newline="", encoding="utf-8-sig") as handle:
                header = next(csv.reader(handle), None)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise self.error(where, f"cannot read {file}: {first_line(exc)}") from None
        if not header:
            raise self.error(where, f"{file} is empty: a CSV source needs a header row")
        header = [name.strip() for name in header]
        for k, name in enumerate(header):
            if header.index(name) != k:
                raise self.error(where, f"{file} has two columns named {name!r}")
        return header

    def csv_values(
        self, file: Path, header: list[str], wanted: list[str], where: tuple
    ) -> np.ndarray:
        """The wanted columns as float64, a row per sample; a cell that is not a
        finite number is an error naming its line and column."""
        columns = [header.index(name) for name in wanted]
        rows: list[list[float]] = []
        try:
            with open(file, newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle)
                next(reader)
                for cells in reader:
                    if not cells:
                        continue  # a blank line
                    if len(cells) != len(header):
                        raise self.error(
                            where,
                            f"line {reader.line_num} of {file} has {len(cells)} "
                            f"cells; the header has {len(header)}",
                        )
                    row = []
                    for c, name in zip(columns, wanted):
                        row.append(
                            self.number(cells[c], name, reader.line_num, file, where)
                        )
                    rows.append(row)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise self.error(where, f"cannot read {file}: {first_line(exc)}") from None
        return np.array(rows, dtype=np.float64).reshape(len(rows), len(wanted))

    def number(
        self, cell: str, name: str, line: int, file: Path, where: tuple
    ) -> float:
        text = cell.strip()
        try:
            value = float(text)
        except ValueError:
            value = math.nan
            shown = f"{text!r}" if text else "an empty cell"
        else:
            shown = text
        if not math.isfinite(value):
            raise self.error(
                where,
                f"line {line} of {file}, column {name!r}: {shown} is not a finite "
                "number",
            )
        return value

    def parquet_header(self, file: Path, where: tuple) -> list[str]:
        parquet = self.pyarrow_parquet(where)
        try:
            return list(parquet.read_schema(file).names)
        except Exception as exc:  # pyarrow raises its own kinds for a bad file
            raise self.error(
                where, f"cannot read {file} as Parquet: {first_line(exc)}"
            ) from None

    def parquet_values(self, file: Path, wanted: list[str], where: tuple) -> np.ndarray:
        parquet = self.pyarrow_parquet(where)
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            table = parquet.read_table(file, columns=wanted)
        except Exception as exc:  # pyarrow raises its own kinds for a bad file
            raise self.error(
                where, f"cannot read {file} as Parquet: {first_line(exc)}"
            ) from None
        arrays = []
        for name in wanted:
            column: Any = table.column(name)
            kind = column.type
            if not (
                pa.types.is_integer(kind)
                or pa.types.is_floating(kind)
                or pa.types.is_boolean(kind)
            ):
                raise self.error(
                    where,
                    f"column {name!r} of {file} holds {kind} values; feature and "
                    "target columns hold numbers",
                )
            nulls = column.is_null().to_numpy(zero_copy_only=False)
            if column.null_count:
                fill = False if pa.types.is_boolean(kind) else 0
                column = pc.fill_null(column, pa.scalar(fill, kind))
            values = column.to_numpy(zero_copy_only=False).astype(np.float64)
            values[nulls] = np.nan
            bad = ~np.isfinite(values)
            if bad.any():
                row = int(np.argmax(bad))
                what = "an empty cell" if nulls[row] else f"{values[row]}"
                raise self.error(
                    where,
                    f"row {row + 1} of {file}, column {name!r}: {what} is not a "
                    "finite number",
                )
            arrays.append(values)
        return np.stack(arrays, axis=1)

    def pyarrow_parquet(self, where: tuple) -> Any:
        try:
            import pyarrow.parquet as parquet
        except ImportError:
            raise self.error(
                where,
                "reading Parquet files needs pyarrow: pip install 'nnspec[data]' "
                "(or pyarrow)",
            ) from None
        return parquet
