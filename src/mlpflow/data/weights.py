"""Row weights (data.weight): a column of the table read as one weight per row, checked, and
written beside each split as `w_<split>.npy`.

The column is never a feature (`columns.plan_columns` drops it, so the served model does not
ask for it); training weighs each row's loss by it, validation and evaluate their metrics. A
weight is a number >= 0 on every row that has a target: a missing one is an error rather than
a guess (1? 0?), which only the user can make.
"""

from __future__ import annotations

import numpy as np

from mlpflow.data.scan import Scan, TextStats
from mlpflow.data.sources import preview
from mlpflow.errors import DataError

WEIGHT_ACTION = "row weight: data.weight"  # its plan's action in meta.json and the prepare table
FIX = "weigh rows by a column of numbers >= 0"


def check_weight_column(name: str | None, columns: list[str]) -> None:
    """data.weight names a feature column of the table; a DataError otherwise (data.weight
    naming the target is a config error, `DataConfig`)."""
    if name is not None and name not in columns:
        raise DataError(
            f"data.weight={name!r} names no column of the table; columns: {preview(columns)}"
        )


def row_weights(scan: Scan, name: str, keep: np.ndarray) -> np.ndarray:
    """The weights of the kept rows (those with a target), float32; a DataError for a column
    that is not numbers, or a weight that is missing, negative, or all of them 0."""
    stats = scan.columns[name]
    slot = stats.slot
    if isinstance(stats, TextStats):  # text: the cells read as numbers, in the file's format
        present = int(stats.counts.sum()) + stats.overflow_rows
        if stats.number_cells < present:
            raise DataError(
                f"data.weight={name!r} is not numeric ({stats.dtype}: "
                f"{present - stats.number_cells} of its {present} cells are not numbers); {FIX}"
            )
        slot += 1
    values = np.empty(scan.rows, dtype=np.float64)
    for start, block in scan.raw.chunks():
        values[start : start + len(block)] = block[:, slot]
    weights = values[keep]
    if missing := int(np.isnan(weights).sum()):
        raise DataError(
            f"data.weight={name!r} is missing on {missing} of the {len(weights)} rows with a "
            "target (empty, or not a finite number): fill in their weights, or drop those rows "
            "from the table"
        )
    if negative := int((weights < 0).sum()):
        raise DataError(
            f"data.weight={name!r} has {negative} negative weights (the lowest "
            f"{float(weights.min()):g}); {FIX}"
        )
    with np.errstate(over="ignore"):
        weights = weights.astype(np.float32)
    if not np.isfinite(weights).all():
        raise DataError(f"data.weight={name!r} has weights beyond float32 range; rescale them")
    if not weights.any():
        raise DataError(
            f"data.weight={name!r} weighs every row 0: nothing to learn from; give the rows "
            "that count a positive weight"
        )
    return weights


def check_split_weights(name: str, split: str, weights: np.ndarray) -> None:
    """A split's rows weigh more than 0 together: its loss and metrics are weighted means."""
    if len(weights) and not weights.any():
        raise DataError(
            f"data.weight={name!r} weighs all {len(weights)} rows of the {split} split 0, so "
            "its weighted loss and metrics are undefined; give more rows a positive weight, "
            "or split otherwise (seed, data.val_size, data.test_size)"
        )
