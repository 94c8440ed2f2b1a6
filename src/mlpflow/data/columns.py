"""The column plan: each feature column's role, and the target's task and classes.

A column's role is numeric, boolean, categorical, or dropped; inferred from the scan, then
overridden. Text that reads as numbers (but for a few stray cells) is numeric, two boolean words
are boolean, other text categorical; whole numbers in a column whose name reads as an
identifier's (`school_id`, `StoreID`, `nr`) are codes of an entity: categorical, or an ID when
unique. A row number, an ID (unique on nearly every row), a date/time as unique, a constant or
an empty column is dropped. `data.categorical`, `data.numeric` and `data.drop` override the
inference; the `cv.group` and `data.weight` columns are dropped. `Columns` reads the planned
columns' values back out of the scratch file, by role. The target decides the task
(`data.task=auto`: numbers with few whole values are classes) and its classes, 0..K-1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mlpflow.data.prepared import ColumnPlan
from mlpflow.data.scan import NumericStats, Scan, TargetValues, TextStats
from mlpflow.data.text import boolean_value, is_boolean_text, is_number_type, is_temporal
from mlpflow.data.weights import WEIGHT_ACTION
from mlpflow.errors import DataError

if TYPE_CHECKING:
    from mlpflow.config.schema import DataConfig

NUMBER_SHARE = 0.9  # text is numeric when this share of its cells read as numbers
ID_SHARE = 0.95  # text is an ID when it has a distinct value on this share of its rows
ID_MIN_LEVELS = 20
ROW_NUMBER_NAMES = ("", "Unnamed: 0")  # the index column pandas' to_csv writes first
# A timestamp on nearly every row is no ID, but the network cannot use it as it is either.
TIMESTAMP = "date/time, add its parts (month, weekday, hour) as columns to use it"
# A name whose last word ends so names an entity (school_id, StoreID, schid, countyfips, fcode)
CODE_ENDINGS = ("id", "code", "fips")
CODE_WORDS = frozenset({"nr", "no", "key", "zip", "zipcode"})  # or is one of these
WHOLE_NUMBER = re.compile(r"\s*[+-]?\d+(\.0*)?\s*")
MAX_AUTO_CLASSES = 20  # task=auto: an integer target with at most this many values is classes


# >>> Roles


def names_a_code(name: str) -> bool:
    """Whether a column's name reads as an identifier's: its last word (words split at
    non-letters and at camelCase, digits ignored) ends in id, code or fips, or is nr, no, key or
    zip. An integer column so named holds codes (a school, a person, a store) whose size means
    nothing: embedded, each code can carry its own effect, which a standardized number cannot."""
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+", name)
    last = words[-1].lower() if words else ""
    return last.endswith(CODE_ENDINGS) or last in CODE_WORDS


def scanned_as_text(names: Iterable[str], data: DataConfig) -> set[str]:
    """The columns the scan reads as text whatever their type: data.categorical, and those
    named as codes (`names_a_code`) that data.numeric, data.drop or data.weight do not claim."""
    claimed = {*data.numeric, *data.drop, data.weight}
    return {*data.categorical, *(n for n in names if names_a_code(n) and n not in claimed)}


def plan_columns(scan: Scan, data: DataConfig, group: str | None = None) -> Columns:
    """Every column's plan; a DataError names an override that names no column, or a forced
    numeric column that is mostly text, or a table left with no feature. The `group` column
    (cv.group) is dropped: a held-out fold's groups are unseen by construction; so is the
    data.weight column, which weighs rows and is not known when predicting."""
    categorical, numeric, drop = data.categorical, data.numeric, data.drop
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
        if name == group:
            plans.append(_plan(name, stats, "drop", "dropped: cv.group (rows grouped by it)"))
        elif name == data.weight:
            plans.append(_plan(name, stats, "drop", WEIGHT_ACTION))
        elif name in drop:
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
    return Columns(scan, plans)


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
    if names_a_code(name) and len(stats.levels) > 2 and _whole_numbers(stats, present):
        return _code_plan(name, stats, present)
    if is_number_type(stats.dtype):  # numbers scanned as text for their name, not codes
        zero_one = set(stats.names) <= {"0", "1"}
        return _plan(name, stats, *(("boolean", "boolean: 0/1") if zero_one else ("numeric",) * 2))
    if stats.dtype != "dictionary" and stats.number_cells >= NUMBER_SHARE * present:
        strays = present - stats.number_cells
        return _plan(name, stats, "numeric", f"numeric: text, {strays} stray cells missing")
    distinct = len(stats.levels) + stats.overflow_rows  # every overflow cell counted distinct
    if distinct >= ID_SHARE * present and len(stats.levels) >= ID_MIN_LEVELS:
        if is_temporal(stats.dtype):
            return _plan(name, stats, "drop", f"dropped: {TIMESTAMP} ({distinct} distinct)")
        return _plan(name, stats, "drop", f"dropped: ID ({distinct} distinct of {present})")
    return _plan(name, stats, "categorical", "categorical")


def _code_plan(name: str, stats: TextStats, present: int) -> ColumnPlan:
    """Whole numbers in a column named as codes: an ID when unique on nearly every row, else
    categorical, one level per code."""
    distinct = len(stats.levels) + stats.overflow_rows
    if distinct >= ID_SHARE * present and len(stats.levels) >= ID_MIN_LEVELS:
        return _plan(name, stats, "drop", f"dropped: ID, by its name ({distinct} distinct)")
    return _plan(name, stats, "categorical", "categorical: integer codes, by its name")


def _whole_numbers(stats: TextStats, present: int) -> bool:
    """Every present cell a whole number (`12`, `012`, `12.0`)."""
    return stats.number_cells == present and all(map(WHOLE_NUMBER.fullmatch, stats.names))


# >>> The planned columns' values, read back from the scratch file


class Columns:
    """The plans of a scanned table, and the planned columns' values read back from the scan's
    scratch file a chunk at a time: numbers for the numeric and boolean columns (continuous
    first, NaN where missing) and level codes for the categorical ones."""

    def __init__(self, scan: Scan, plans: list[ColumnPlan]) -> None:
        self.plans = plans
        by_role = {role: [p for p in plans if p.role == role] for role in ("numeric", "boolean")}
        numeric = by_role["numeric"] + by_role["boolean"]
        self.numeric_names = [p.name for p in numeric]
        self.n_continuous = len(by_role["numeric"])
        self.categorical_names = [p.name for p in plans if p.role == "categorical"]
        # each categorical column's scanned levels, in the order of their scan codes
        self.levels = [scan.columns[name].names for name in self.categorical_names]
        self._raw = scan.raw
        self._numeric = [self._reader(scan.columns[p.name], p.role) for p in numeric]
        self._code_slots = [scan.columns[name].slot for name in self.categorical_names]

    def chunks(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first row, numbers [n, numeric columns], level codes [n, categorical columns]) for
        consecutive chunks of rows; each chunk is only valid until the next."""
        for start, block in self._raw.chunks():
            yield start, self._numbers(block), self._codes(block)

    @staticmethod
    def _reader(stats: NumericStats | TextStats, role: str) -> tuple[int, np.ndarray | None]:
        """(slot, lookup by code or None)."""
        if isinstance(stats, NumericStats):
            return stats.slot, None
        if role == "numeric" or is_number_type(stats.dtype):  # text cells read as numbers
            return stats.slot + 1, None
        return stats.slot, np.array([boolean_value(level) for level in stats.names] + [np.nan])

    def _numbers(self, block: np.ndarray) -> np.ndarray:
        out = np.empty((len(block), len(self._numeric)), dtype=np.float64)
        for j, (slot, lookup) in enumerate(self._numeric):
            values = block[:, slot]
            if lookup is not None:  # boolean words: code -> 0/1; missing/overflow -> NaN
                codes = np.where(np.isnan(values) | (values < 0), len(lookup) - 1, values)
                values = lookup[codes.astype(np.int64)]
            out[:, j] = values
        return out

    def _codes(self, block: np.ndarray) -> np.ndarray:
        """Level codes as int64: -1 where missing, -2 beyond the tracked levels."""
        values = block[:, self._code_slots]
        return np.where(np.isnan(values), -1, values).astype(np.int64)


# >>> The target: task and classes


@dataclass
class Target:
    """The target of the kept rows, encoded for the task."""

    task: str  # binary, multiclass or regression
    y: np.ndarray  # int64 class indices or float32 values
    classes: list[str] | None
    weight: np.ndarray | None = None  # float32 data.weight per kept row (data/weights.py)


def encode_target(
    target: TargetValues, keep: np.ndarray, task: str, fixed_task: str | None
) -> Target:
    """Resolve task=auto and check an explicit task against the target; encode classes 0..K-1."""
    numeric = target.kind == "numeric"
    values = target.values[keep] + 0.0 if numeric else None  # -0.0 is 0.0 (one class)
    task = fixed_task or task
    # sorted distinct values (finite once kept), unless the task is regression anyway
    uniques = np.unique(values) if numeric and task != "regression" else None
    if task == "auto":
        integer_valued = uniques is not None and bool(np.all(uniques == np.round(uniques)))
        few = uniques is not None and len(uniques) <= MAX_AUTO_CLASSES
        task = "regression" if numeric and not (integer_valued and few) else "classification"
    if task == "regression":
        return _regression_target(target, values)
    codes, classes = _class_codes(target, keep, values, uniques)
    return Target(_class_task(target.name, task, classes), codes, classes)


def _regression_target(target: TargetValues, values: np.ndarray | None) -> Target:
    if values is None:
        raise DataError(
            f"data.task=regression but target {target.name!r} is not numeric "
            f"(dtype {target.dtype}); use data.task=auto, binary or multiclass"
        )
    with np.errstate(over="ignore"):
        y = values.astype(np.float32)
    if not np.isfinite(y).all():
        raise DataError(f"target {target.name!r} has values beyond float32 range; rescale it")
    return Target("regression", y, None)


def _class_codes(
    target: TargetValues, keep: np.ndarray, values: np.ndarray | None, uniques: np.ndarray | None
) -> tuple[np.ndarray, list[str]]:
    """Class indices 0..K-1 of the kept rows, and the class names in index order."""
    if values is not None:
        codes = np.searchsorted(uniques, values)
        as_int = bool(np.all(uniques == np.round(uniques)))
        classes = [str(int(v)) if as_int else str(v) for v in uniques]
    elif target.kind == "bool":
        uniques, codes = np.unique(target.values[keep], return_inverse=True)
        classes = [str(bool(v)) for v in uniques]  # "False" < "True", as pandas' astype(str)
    else:  # category (its order) or text (sorted): the classes present, in the names' order
        used, codes = np.unique(target.codes[keep], return_inverse=True)
        classes = [target.names[i] for i in used]
    return np.asarray(codes, dtype=np.int64).reshape(-1), classes


def _class_task(name: str, task: str, classes: list[str]) -> str:
    """binary or multiclass, from the number of classes; a DataError when it contradicts."""
    shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    if len(classes) == 1:
        raise DataError(
            f"target {name!r} has a single class {classes[0]!r}; a classifier needs at least 2"
        )
    if task == "binary" and len(classes) != 2:
        raise DataError(
            f"data.task=binary but target {name!r} has {len(classes)} classes ({shown}); "
            "use data.task=multiclass or auto"
        )
    if task == "multiclass" and len(classes) == 2:
        raise DataError(
            f"data.task=multiclass but target {name!r} has 2 classes ({shown}); "
            "use data.task=binary or auto"
        )
    return "binary" if len(classes) == 2 else "multiclass"
