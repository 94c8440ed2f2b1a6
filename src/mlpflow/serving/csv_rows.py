"""A user's CSV or Parquet file as a model's input: the signature's columns in the signature's
types, so that a messy file predicts.

Cells are read by the served model's own readers (`raw_rows.column_numbers`), so a cell reads
the same through `mlpflow predict` as in a DataFrame sent to the model; only the format differs,
as it should: a CSV's delimiter and number format are read from the file as prepare reads a
training table (`mlpflow.data.sniff`), and where its cells do not tell (no decimal in it, or only
`1,234`), the training table's format decides. A CSV's cells are read as text and parsed there,
never by pandas' own number reading (whose thousands rule would read `1,5` as 15). A Parquet file
is read as pandas reads it: category and timestamp columns as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pandas.api import types

from mlpflow.data.prepared import Meta
from mlpflow.data.sniff import sniff_file
from mlpflow.data.text import DEFAULT_FORMAT, TextFormat, level_text
from mlpflow.errors import DataError, first_line
from mlpflow.notice import warn
from mlpflow.serving.raw_rows import column_numbers, warn_unread

if TYPE_CHECKING:
    from mlflow.types import Schema

PARQUET_SUFFIXES = (".parquet", ".pq")
NUMBER_ROLES = ("numeric", "boolean")


def read_rows(path: str | Path, schema: Schema, meta: Meta | None = None) -> pd.DataFrame:
    """The file's signature columns, in the signature's types; a missing column is an error,
    an extra one is ignored with a warning, a cell that does not fit is missing (and said).
    `meta`: an mlpflow model's, for its columns' roles and the training table's format."""
    path = Path(path)
    training = meta.text_format if meta is not None else DEFAULT_FORMAT
    if path.suffix.lower() in PARQUET_SUFFIXES:
        frame, fmt = _read_parquet(path), training
    else:
        fmt = _csv_format(path, training)
        frame = _read_csv(path, fmt.delimiter)
    expected = {spec.name: spec.type for spec in schema.inputs}
    missing = [name for name in expected if name not in frame.columns]
    if missing:
        raise DataError(
            f"{path} does not fit the model's input (missing: {', '.join(missing)}); "
            f"expected {_describe(expected)}"
        )
    warn_unread(frame.columns, expected, meta.target if meta is not None else None)
    roles = {column.name: column.role for column in meta.columns} if meta is not None else {}
    columns = {
        name: _as_type(frame[name], kind, roles.get(name), path, fmt)
        for name, kind in expected.items()
    }
    return pd.DataFrame(columns, index=frame.index)


def _csv_format(path: Path, training: TextFormat) -> TextFormat:
    try:
        return sniff_file(path, str(path), fallback=training)
    except FileNotFoundError as error:
        raise DataError(f"input file not found: {path}") from error
    except OSError as error:
        raise DataError(f"cannot read {path}: {first_line(error)}") from error


def _read_csv(path: Path, delimiter: str) -> pd.DataFrame:
    """Every cell as text (missing-value markers as pandas reads them: NaN)."""
    try:
        return pd.read_csv(path, sep=delimiter, dtype=str)
    except FileNotFoundError as error:
        raise DataError(f"input file not found: {path}") from error
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        message = first_line(error, "unreadable")
        raise DataError(f"cannot read {path} as CSV: {message}") from error


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except FileNotFoundError as error:
        raise DataError(f"input file not found: {path}") from error
    except Exception as error:  # not Parquet, truncated: unreadable either way
        raise DataError(f"cannot read {path} as Parquet: {first_line(error)}") from error


def _as_type(
    column: pd.Series, kind: object, role: str | None, path: Path, fmt: TextFormat
) -> pd.Series:
    """One signature column. A number or boolean column (by its type, or by its role in an
    mlpflow model: a column of numbers written as text takes any type) is read in the file's
    format; a categorical one is left to the model, which matches its cells by meaning."""
    name = getattr(kind, "name", None)  # mlflow's DataType; AnyType has none
    boolean = name == "boolean" or role == "boolean"
    if name in ("long", "integer", "boolean"):
        return _exact(column, name, kind.to_numpy(), boolean, path, fmt)  # type: ignore[attr-defined]
    if name in ("double", "float") or (name is None and role in NUMBER_ROLES):
        values = column_numbers(column, boolean, fmt)
        if not (types.is_numeric_dtype(column) or types.is_bool_dtype(column)):
            strays = int((np.isnan(values) & column.notna().to_numpy()).sum())
            if strays:
                warn(f"{strays} cell(s) of column {column.name!r} are not numbers: read as missing")
        return pd.Series(values, index=column.index, name=column.name)
    if name is None:  # Any: a categorical column, matched by meaning (category, dates too)
        return column
    return column.astype(object).map(level_text).astype(object)


def _exact(
    column: pd.Series, name: str, wanted: np.dtype, boolean: bool, path: Path, fmt: TextFormat
) -> pd.Series:
    """An integer or boolean column (the model was trained without missing values in it)."""
    values = column_numbers(column, boolean, fmt)
    if name == "boolean":
        fits = bool(np.isin(values, (0.0, 1.0)).all())
    else:
        fits = bool((values == np.round(values)).all())  # False for NaN too
    if not fits:
        raise DataError(
            f"{path}: column {column.name!r} is {column.dtype}, the model takes {name} "
            "values only (it was trained without missing values in it)"
        )
    return pd.Series(values.astype(wanted), index=column.index, name=column.name)


def _describe(expected: dict[str, object]) -> str:
    """The model's input columns (each takes any type: cells are read by meaning)."""
    return f"{len(expected)} columns: {', '.join(expected)}"
