"""Each column's role: numeric, boolean, categorical, or dropped; inferred, then overridden.

Inferred from the scan: text that reads as numbers (but for a few stray cells) is numeric, two
boolean words are boolean, other text categorical; a row number, an ID (unique on nearly every
row), a date/time as unique, a constant or an empty column is dropped. `data.categorical`,
`data.numeric` and `data.drop` override the inference. `Decoder` reads a role's values out of
the scratch file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlpflow.data.scan import NumericStats, Scan, TextStats
from mlpflow.data.text import boolean_value, is_boolean_text, is_temporal
from mlpflow.errors import DataError

NUMBER_SHARE = 0.9  # text is numeric when this share of its cells read as numbers
ID_SHARE = 0.95  # text is an ID when it has a distinct value on this share of its rows
ID_MIN_LEVELS = 20
ROW_NUMBER_NAMES = ("", "Unnamed: 0")  # the index column pandas' to_csv writes first
# A timestamp on nearly every row is no ID, but the network cannot use it as it is either.
TIMESTAMP = "date/time, add its parts (month, weekday, hour) as columns to use it"


@dataclass(frozen=True)
class ColumnPlan:
    """What prepare does with one raw column; meta.json lists one per column."""

    name: str
    role: str  # numeric | boolean | categorical | drop
    dtype: str  # as read: int64, double, bool, string, dictionary...
    levels: int | None  # distinct values of a text column
    missing: int  # empty cells, NaN/inf, and text cells that are not numbers in a numeric one
    action: str  # what was done, in a few words


def plan_columns(
    scan: Scan, categorical: list[str], numeric: list[str], drop: list[str]
) -> list[ColumnPlan]:
    """Every column's plan; a DataError names an override that names no column, or a forced
    numeric column that is mostly text, or a table left with no feature."""
    for key, names in (("categorical", categorical), ("numeric", numeric), ("drop", drop)):
        unknown = [name for name in names if name not in scan.columns]
        if unknown:
            raise DataError(
                f"data.{key} names no column of the table: {', '.join(unknown)}; "
                f"columns: {', '.join(scan.columns)}"
            )
    first = next(iter(scan.columns), None)
    plans = []
    for name, stats in scan.columns.items():
        if name in drop:
            plans.append(_plan(name, stats, "drop", "dropped: data.drop"))
        elif name in categorical:
            plans.append(_plan(name, stats, "categorical", "categorical: data.categorical"))
        elif name in numeric:
            plans.append(_forced_numeric(name, stats))
        else:
            plans.append(_infer(name, stats, scan.rows, first=name == first))
    if all(plan.role == "drop" for plan in plans):
        raise DataError(
            f"no usable feature column besides the target {scan.target.name!r}: "
            f"{'; '.join(f'{p.name} ({p.action})' for p in plans) or 'none'}; add feature columns "
            "or keep one with data.numeric / data.categorical"
        )
    return plans


def _plan(name: str, stats: NumericStats | TextStats, role: str, action: str) -> ColumnPlan:
    levels = len(stats.levels) if isinstance(stats, TextStats) else None
    missing = stats.missing
    if role == "numeric" and isinstance(stats, TextStats):  # stray text cells are missing too
        missing = _rows(stats) - stats.number_cells
    return ColumnPlan(name, role, stats.dtype, levels, missing, action)


def _rows(stats: TextStats) -> int:
    return int(stats.counts.sum()) + stats.overflow_rows + stats.missing


def _forced_numeric(name: str, stats: NumericStats | TextStats) -> ColumnPlan:
    if isinstance(stats, NumericStats):
        return _plan(name, stats, "numeric", "numeric: data.numeric")
    present = _rows(stats) - stats.missing
    not_numbers = present - stats.number_cells
    if not_numbers > present / 2:
        raise DataError(
            f"data.numeric lists {name!r}, but {not_numbers} of its {present} cells are not "
            "numbers; leave it out of data.numeric (it is then categorical) or clean the column"
        )
    return _plan(name, stats, "numeric", f"numeric: data.numeric, {not_numbers} text cells missing")


def _infer(name: str, stats: NumericStats | TextStats, rows: int, first: bool) -> ColumnPlan:
    if isinstance(stats, NumericStats):
        return _infer_numeric(name, stats, rows, first)
    return _infer_text(name, stats, first)


def _infer_numeric(name: str, stats: NumericStats, rows: int, first: bool) -> ColumnPlan:
    if stats.missing == rows:
        return _plan(name, stats, "drop", "dropped: empty")
    if stats.low == stats.high and not stats.missing:
        return _plan(name, stats, "drop", "dropped: constant")
    if (first and name in ROW_NUMBER_NAMES) or (not stats.missing and any(stats.counts_rows)):
        return _plan(name, stats, "drop", "dropped: row number")
    if stats.zero_one:
        return _plan(name, stats, "boolean", "boolean: 0/1")
    return _plan(name, stats, "numeric", "numeric")


def _infer_text(name: str, stats: TextStats, first: bool) -> ColumnPlan:
    present = _rows(stats) - stats.missing
    if present == 0:
        return _plan(name, stats, "drop", "dropped: empty")
    if len(stats.levels) == 1 and not stats.missing:
        return _plan(name, stats, "drop", "dropped: constant")
    if first and name in ROW_NUMBER_NAMES:
        return _plan(name, stats, "drop", "dropped: row number")
    if stats.dtype != "dictionary" and is_boolean_text(stats.names) and not stats.overflow_rows:
        return _plan(name, stats, "boolean", f"boolean: {'/'.join(sorted(stats.names))}")
    if stats.dtype != "dictionary" and stats.number_cells >= NUMBER_SHARE * present:
        strays = present - stats.number_cells
        return _plan(name, stats, "numeric", f"numeric: text, {strays} stray cells missing")
    distinct = len(stats.levels) + stats.overflow_rows  # every overflow cell counted distinct
    if distinct >= ID_SHARE * present and len(stats.levels) >= ID_MIN_LEVELS:
        if is_temporal(stats.dtype):
            return _plan(name, stats, "drop", f"dropped: {TIMESTAMP} ({distinct} distinct)")
        return _plan(name, stats, "drop", f"dropped: ID ({distinct} distinct of {present})")
    return _plan(name, stats, "categorical", "categorical")


class Decoder:
    """A plan's values out of scratch-file chunks: numbers for the numeric and boolean columns
    (continuous first, NaN where missing) and level codes for the categorical ones."""

    def __init__(self, scan: Scan, plans: list[ColumnPlan]) -> None:
        by_role = {role: [p for p in plans if p.role == role] for role in ("numeric", "boolean")}
        self.numeric_names = [p.name for p in by_role["numeric"] + by_role["boolean"]]
        self.n_continuous = len(by_role["numeric"])
        self.categorical_names = [p.name for p in plans if p.role == "categorical"]
        self._numeric = [
            self._reader(scan.columns[p.name], p.role)
            for p in by_role["numeric"] + by_role["boolean"]
        ]
        self._code_slots = [scan.columns[name].slot for name in self.categorical_names]

    @staticmethod
    def _reader(stats: NumericStats | TextStats, role: str) -> tuple[int, np.ndarray | None]:
        """(slot, lookup by code or None)."""
        if isinstance(stats, NumericStats):
            return stats.slot, None
        if role == "numeric":
            return stats.slot + 1, None
        return stats.slot, np.array([boolean_value(level) for level in stats.names] + [np.nan])

    def numbers(self, block: np.ndarray) -> np.ndarray:
        out = np.empty((len(block), len(self._numeric)), dtype=np.float64)
        for j, (slot, lookup) in enumerate(self._numeric):
            values = block[:, slot]
            if lookup is not None:  # boolean words: code -> 0/1; missing/overflow -> NaN
                codes = np.where(np.isnan(values) | (values < 0), len(lookup) - 1, values)
                values = lookup[codes.astype(np.int64)]
            out[:, j] = values
        return out

    def codes(self, block: np.ndarray) -> np.ndarray:
        """Level codes as int64: -1 where missing, -2 beyond the tracked levels."""
        values = block[:, self._code_slots]
        return np.where(np.isnan(values), -1, values).astype(np.int64)
