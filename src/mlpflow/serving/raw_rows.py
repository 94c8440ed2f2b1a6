"""Raw rows (a DataFrame as a user's file has them) -> the network's inputs, with the
preprocessing prepare fitted: the same text parsing, imputation, transform and vocabularies."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api import types

from mlpflow.data.prepared import Meta
from mlpflow.data.text import boolean_value, level_text, parse_number
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
    extra = [str(name) for name in rows.columns if name not in needed and name != meta.target]
    if extra:
        warn(f"ignoring column(s) the model does not read: {', '.join(extra)}")


def column_numbers(column: pd.Series, words: bool) -> np.ndarray:
    """A column as float64, NaN where missing (inf too): numbers as they are, booleans as 0/1,
    text parsed as prepare parses it (boolean words when `words`)."""
    if types.is_bool_dtype(column) or types.is_numeric_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = np.array([_cell_number(cell, words) for cell in column], dtype=np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def _cell_number(cell: object, words: bool) -> float:
    if isinstance(cell, str):
        return boolean_value(cell) if words else parse_number(cell)
    if cell is None or pd.isna(cell):
        return np.nan
    return float(cell)  # type: ignore[arg-type]


def network_inputs(
    meta: Meta, rows: pd.DataFrame, estimator: object
) -> tuple[np.ndarray, np.ndarray]:
    """(float32 features [n, F], int64 level codes [n, categorical columns])."""
    check_columns(meta, rows)
    plans = {column.name: column for column in meta.columns}
    numeric = meta.numeric
    numbers = np.empty((len(rows), len(numeric.names)), dtype=np.float64)
    for j, name in enumerate(numeric.names):
        words = plans[name].role == "boolean" and plans[name].dtype != "bool"
        numbers[:, j] = column_numbers(rows[name], words)
    gaps = np.isnan(numbers)
    if gaps.any() and numeric.medians is None:
        columns = [name for name, gap in zip(numeric.names, gaps.any(axis=0), strict=True) if gap]
        raise DataError(
            f"missing or infinite values in {int(gaps.any(axis=1).sum())} row(s), columns "
            f"{', '.join(columns)}; the model was trained with "
            f"data.nan_policy={meta.nan_policy} and cannot impute them"
        )
    texts = [[level_text(cell) for cell in rows[name]] for name in meta.categorical.names]
    return numeric.apply(numbers, estimator), meta.categorical.encode(texts)
