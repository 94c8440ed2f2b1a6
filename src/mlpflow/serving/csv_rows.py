"""A user's CSV as a model's input: the signature's columns, each read into its type the way
prepare reads a table (numbers as text, stray cells missing), so that a messy file predicts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlpflow.console import warn
from mlpflow.data.text import boolean_value, level_text, parse_number
from mlpflow.errors import DataError, first_line

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.types import DataType, Schema


def read_rows(path: str | Path, schema: Schema) -> pd.DataFrame:
    """The CSV's signature columns, in the signature's types; a missing column is an error,
    an extra one is ignored with a warning, a cell that does not fit is missing (and said)."""
    frame = _read_csv(Path(path))
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

    columns = {name: _as_type(frame[name], kind, path) for name, kind in expected.items()}
    return pd.DataFrame(columns, index=frame.index)


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_csv(path)
    except FileNotFoundError as error:
        raise DataError(f"input file not found: {path}") from error
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        message = first_line(error, "unreadable")
        raise DataError(f"cannot read {path} as CSV: {message}") from error


def _as_type(column: pd.Series, kind: DataType, path: str | Path) -> pd.Series:
    from pandas.api import types

    if kind.name in ("double", "float"):
        if types.is_numeric_dtype(column) or types.is_bool_dtype(column):
            return column.astype(np.float64)
        values = column.map(_number).astype(np.float64)
        strays = int((values.isna() & column.notna()).sum())
        if strays:
            warn(f"{strays} cell(s) of column {column.name!r} are not numbers: read as missing")
        return values
    if kind.name in ("long", "integer", "boolean"):
        wanted = kind.to_numpy()
        fits = (
            types.is_bool_dtype(column)
            if kind.name == "boolean"
            else types.is_integer_dtype(column)
        )
        if not fits or column.isna().any():
            raise DataError(
                f"{path}: column {column.name!r} is {column.dtype}, the model takes {kind.name} "
                "values only (it was trained without missing values in it)"
            )
        return column.astype(wanted)
    return column.map(level_text).astype(object)


def _number(cell: object) -> float:
    if isinstance(cell, str):
        number = parse_number(cell)
        return number if not np.isnan(number) else boolean_value(cell)
    return np.nan if cell is None else float(cell)  # type: ignore[arg-type]


def _describe(expected: dict[str, DataType]) -> str:
    kinds = {kind.name for kind in expected.values()}
    if len(kinds) == 1:
        return f"{len(expected)} {kinds.pop()} columns {', '.join(expected)}"
    return ", ".join(f"{name} ({kind.name})" for name, kind in expected.items())
