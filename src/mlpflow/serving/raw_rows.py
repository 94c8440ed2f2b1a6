"""Raw rows (a DataFrame as a user's file has them) -> the network's inputs, with the
preprocessing prepare fitted: the same text parsing, imputation, transform and vocabularies.

This module reads cells for both entry points: the served model (a DataFrame's rows) and
`mlpflow predict` (a file's cells, `csv_rows`), so a cell reads the same whichever way it comes.
A number column's text cell is a number in the table's format (the served model knows the
training table's, meta.json's `text_format`: a model trained on `1.234,5` reads `1.234,5`); a
boolean column's is a boolean word or else a number. A categorical cell is matched to the train
levels by what it means: a date column's `2023-01-07`, `2023-01-07 00:00:00` and a pandas
Timestamp are one level, and so are a number column's `1010`, `1010.0` and 1010; pandas category
columns too. A date column's cells (Timestamps, datetime64 values, ISO text) are read as moments
and split into the parts prepare derived (`mlpflow.data.dates`)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

import numpy as np
import pandas as pd
from pandas.api import types

from mlpflow.data.dates import date_seconds, is_categorical_part, part_levels, part_values
from mlpflow.data.prepared import Meta
from mlpflow.data.text import (
    DEFAULT_FORMAT,
    TextFormat,
    boolean_value,
    is_number_type,
    is_temporal,
    level_text,
    parse_number,
    temporal_text,
)
from mlpflow.errors import DataError
from mlpflow.notice import warn


def check_columns(meta: Meta, rows: pd.DataFrame) -> None:
    """A missing input column is an error naming it; extra columns are ignored, with a warning."""
    needed = meta.input_columns
    missing = [name for name in needed if name not in rows.columns]
    if missing:
        raise DataError(
            f"missing input column(s) {', '.join(missing)}; the model reads: {', '.join(needed)}"
        )
    warn_unread(rows.columns, needed, meta.target)


def warn_unread(columns: Iterable[object], read: Collection[str], target: str | None) -> None:
    """One warning naming the columns the model does not read; the target column is expected
    in rows like the training table's and is not named."""
    extra = [str(name) for name in columns if name not in read and name != target]
    if extra:
        warn(f"ignoring column(s) the model does not read: {', '.join(extra)}")


def column_numbers(
    column: pd.Series, boolean: bool, fmt: TextFormat = DEFAULT_FORMAT
) -> np.ndarray:
    """A number or boolean column as float64, NaN where missing (inf too): numbers as they
    are, booleans as 0/1, text parsed as prepare parses it (`_cell_number`)."""
    if types.is_bool_dtype(column) or types.is_numeric_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = _by_distinct(column, lambda cell: _cell_number(cell, boolean, fmt), np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def _cell_number(cell: object, boolean: bool, fmt: TextFormat) -> float:
    """One cell of a number column (`boolean`: of a boolean column) as a float: text in the
    table's format `fmt` (a boolean column's: a boolean word, else a number); NaN when missing
    or unreadable."""
    if isinstance(cell, str):
        number = boolean_value(cell) if boolean else np.nan
        return parse_number(cell, fmt) if np.isnan(number) else number
    if cell is None or pd.isna(cell):
        return np.nan
    return float(cell)  # type: ignore[arg-type]


def _by_distinct(column: pd.Series, read: Callable[[object], object], dtype: object) -> np.ndarray:
    """`read` applied once per distinct cell (a column repeats its values), missing cells None."""
    codes, uniques = pd.factorize(column.astype(object), use_na_sentinel=True)
    done = [read(cell) for cell in uniques] + [read(None)]
    return np.asarray(done, dtype=dtype)[codes]  # code -1 (missing): the last


def column_levels(column: pd.Series, dtype: str, fmt: TextFormat = DEFAULT_FORMAT) -> list:
    """A categorical column's cells as the levels prepare read (None where missing), matched by
    meaning: text in a date/time column (`dtype` as read in training) as `temporal_text`, text
    in a number column as the number, anything else (category values too) by `level_text`."""
    if is_temporal(dtype):
        read = _temporal_level
    elif dtype == "bool":
        read = _boolean_level
    elif is_number_type(dtype):
        read = lambda cell: _number_level(cell, fmt)  # noqa: E731
    else:
        read = level_text
    return _by_distinct(column, read, object).tolist()


def _temporal_level(cell: object) -> str | None:
    return temporal_text(cell) if isinstance(cell, str) else level_text(cell)


def _boolean_level(cell: object) -> str | None:
    if isinstance(cell, str) and cell.strip().lower() in ("true", "false"):
        return cell.strip().lower()
    return level_text(cell)


def _number_level(cell: object, fmt: TextFormat) -> str | None:
    if isinstance(cell, str):
        number = parse_number(cell, fmt)
        return cell if np.isnan(number) else level_text(number)
    return level_text(cell)


def column_dates(column: pd.Series) -> np.ndarray:
    """A date column's cells as seconds since 1970-01-01 UTC (NaN where missing or no date), as
    prepare read them: each cell by its ISO text (`level_text`), so a Timestamp, a datetime64
    value and `2023-01-07 13:45` read alike."""
    return _by_distinct(column, _cell_seconds, np.float64)


def _cell_seconds(cell: object) -> float:
    return date_seconds(cell if isinstance(cell, str) else level_text(cell))


def date_features(meta: Meta, rows: pd.DataFrame) -> dict[str, np.ndarray | list]:
    """Each date column's parts, by feature name: float64 numbers, or levels (None missing)."""
    features: dict[str, np.ndarray | list] = {}
    for plan in meta.columns:
        if plan.role != "date":
            continue
        seconds = column_dates(rows[plan.name])
        for part, name in zip(plan.parts or (), plan.features, strict=True):
            categorical = is_categorical_part(part)
            features[name] = (part_levels if categorical else part_values)(seconds, part)
    return features


def network_inputs(
    meta: Meta, rows: pd.DataFrame, estimator: object
) -> tuple[np.ndarray, np.ndarray]:
    """(float32 features [n, F], int64 level codes [n, categorical features])."""
    check_columns(meta, rows)
    plans = {column.name: column for column in meta.columns}
    dates = date_features(meta, rows)
    numeric = meta.numeric
    numbers = np.empty((len(rows), len(numeric.names)), dtype=np.float64)
    fmt = meta.text_format
    for j, name in enumerate(numeric.names):
        if name in dates:
            numbers[:, j] = dates[name]
        else:
            numbers[:, j] = column_numbers(rows[name], plans[name].role == "boolean", fmt)
    gaps = np.isnan(numbers)
    if gaps.any() and numeric.medians is None:
        sources = {feature: plan.name for plan in meta.columns for feature in plan.features}
        gapped = [name for name, gap in zip(numeric.names, gaps.any(axis=0), strict=True) if gap]
        columns = list(dict.fromkeys(sources.get(name, name) for name in gapped))  # raw columns
        raise DataError(
            f"missing or infinite values in {int(gaps.any(axis=1).sum())} row(s), columns "
            f"{', '.join(columns)}; the model was trained with "
            f"data.nan_policy={meta.nan_policy} and cannot impute them"
        )
    texts = [
        dates[name] if name in dates else column_levels(rows[name], plans[name].dtype, fmt)
        for name in meta.categorical.names
    ]
    return numeric.apply(numbers, estimator), meta.categorical.encode(texts)
