"""A user's CSV or Parquet file as a model's input: the signature's columns, each read into its
type the way prepare reads a table (numbers as text, stray cells missing), so that a messy file
predicts.

A CSV's delimiter and number format are read from the file as prepare reads a training table
(`mlpflow.data.sniff`); where its cells do not tell (no decimal in it, or only `1,234`), the
training table's format decides (meta.json's `text_format`). Its cells are read as text and
parsed here, never by pandas' own number reading (whose thousands rule would read `1,5` as 15).
A Parquet file is read as pandas reads it: category and timestamp columns as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlpflow.data.text import DEFAULT_FORMAT, TextFormat, boolean_value, level_text, parse_number
from mlpflow.errors import DataError, first_line
from mlpflow.notice import warn

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.types import Schema

PARQUET_SUFFIXES = (".parquet", ".pq")


def read_rows(
    path: str | Path, schema: Schema, text_format: TextFormat = DEFAULT_FORMAT
) -> pd.DataFrame:
    """The file's signature columns, in the signature's types; a missing column is an error,
    an extra one is ignored with a warning, a cell that does not fit is missing (and said).
    `text_format`: the training table's, for what a CSV's own cells do not tell."""
    path = Path(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        frame, fmt = _read_parquet(path), text_format
    else:
        fmt = _csv_format(path, text_format)
        frame = _read_csv(path, fmt.delimiter)
    expected = {spec.name: spec.type for spec in schema.inputs}
    missing = [name for name in expected if name not in frame.columns]
    if missing:
        raise DataError(
            f"{path} does not fit the model's input (missing: {', '.join(missing)}); "
            f"expected {_describe(expected)}"
        )
    extra = [str(column) for column in frame.columns if column not in expected]
    if extra:
        warn(f"ignoring column(s) the model does not read: {', '.join(extra)}")
    import pandas as pd

    columns = {name: _as_type(frame[name], kind, path, fmt) for name, kind in expected.items()}
    return pd.DataFrame(columns, index=frame.index)


def _csv_format(path: Path, training: TextFormat) -> TextFormat:
    from mlpflow.data.sniff import sniff_file

    try:
        return sniff_file(path, str(path), fallback=training)
    except FileNotFoundError as error:
        raise DataError(f"input file not found: {path}") from error
    except OSError as error:
        raise DataError(f"cannot read {path}: {first_line(error)}") from error


def _read_csv(path: Path, delimiter: str) -> pd.DataFrame:
    """Every cell as text (missing-value markers as pandas reads them: NaN)."""
    import pandas as pd

    try:
        return pd.read_csv(path, sep=delimiter, dtype=str)
    except FileNotFoundError as error:
        raise DataError(f"input file not found: {path}") from error
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        message = first_line(error, "unreadable")
        raise DataError(f"cannot read {path} as CSV: {message}") from error


def _read_parquet(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except FileNotFoundError as error:
        raise DataError(f"input file not found: {path}") from error
    except Exception as error:  # not Parquet, truncated: unreadable either way
        raise DataError(f"cannot read {path} as Parquet: {first_line(error)}") from error


def _as_type(column: pd.Series, kind: object, path: Path, fmt: TextFormat) -> pd.Series:
    from pandas.api import types

    name = getattr(kind, "name", None)  # mlflow's DataType; AnyType has none
    if name in ("double", "float"):
        if types.is_numeric_dtype(column) or types.is_bool_dtype(column):
            return column.astype(np.float64)
        values = _cells(column, lambda cell: _number(cell, fmt), np.float64)
        strays = int((values.isna() & column.notna()).sum())
        if strays:
            warn(f"{strays} cell(s) of column {column.name!r} are not numbers: read as missing")
        return values
    if name in ("long", "integer", "boolean"):
        return _exact(column, name, kind.to_numpy(), path, fmt)  # type: ignore[attr-defined]
    if name is None:  # Any: a categorical column, matched by meaning (category, dates too)
        return column
    return column.astype(object).map(level_text).astype(object)


def _exact(
    column: pd.Series, name: str, wanted: np.dtype, path: Path, fmt: TextFormat
) -> pd.Series:
    """An integer or boolean column (the model was trained without missing values in it)."""
    from pandas.api import types

    def read(cell: object) -> float:
        if isinstance(cell, str):
            return boolean_value(cell) if name == "boolean" else parse_number(cell, fmt)
        return float(cell)  # type: ignore[arg-type]

    values = column
    if not (types.is_bool_dtype(column) or types.is_numeric_dtype(column)):
        values = _cells(column, read, np.float64)
    if name == "boolean":
        fits = types.is_bool_dtype(values) or bool(values.isin([0.0, 1.0]).all())
    else:
        fits = types.is_integer_dtype(values) or bool((values == values.round()).all())
    if not fits or values.isna().any():
        raise DataError(
            f"{path}: column {column.name!r} is {column.dtype}, the model takes {name} "
            "values only (it was trained without missing values in it)"
        )
    return values.astype(wanted)


def _cells(column: pd.Series, read: Callable[[object], float], dtype: type) -> pd.Series:
    """`read` once per distinct text cell; missing cells NaN."""
    import pandas as pd

    codes, uniques = pd.factorize(column.astype(object), use_na_sentinel=True)
    done = np.asarray([read(cell) for cell in uniques] + [np.nan], dtype=dtype)
    return pd.Series(done[codes], index=column.index, name=column.name)


def _number(cell: object, fmt: TextFormat) -> float:
    if isinstance(cell, str):
        number = parse_number(cell, fmt)
        return number if not np.isnan(number) else boolean_value(cell)
    return np.nan if cell is None else float(cell)  # type: ignore[arg-type]


def _describe(expected: dict[str, object]) -> str:
    kinds = {str(getattr(kind, "name", kind)) for kind in expected.values()}
    if len(kinds) == 1:
        return f"{len(expected)} {kinds.pop()} columns {', '.join(expected)}"
    return ", ".join(f"{name} ({getattr(kind, 'name', kind)})" for name, kind in expected.items())
