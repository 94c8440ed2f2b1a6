"""The column plan: each feature column's role, and the target's task and classes.

A column's role is numeric, boolean, categorical, date, or dropped; inferred from the scan, then
overridden. Text that reads as numbers (but for a few stray cells) is numeric, two boolean words
are boolean, a date/time type or text that reads as ISO dates is a date (its parts are features,
`mlpflow.data.dates`), other text categorical; whole numbers in a column whose name reads as an
identifier's (`school_id`, `StoreID`, `nr`) are codes of an entity: categorical, or an ID when
unique. A row number, an ID (unique on nearly every row), free text (sentences, mostly unique), a
constant or an empty column is dropped. `data.categorical`, `data.numeric` and `data.drop`
override the inference; the `cv.group` and `data.weight` columns are dropped. `Columns` reads the
planned columns' values back out of the scratch file, by role. The target decides the task
(`data.task=auto`: numbers with few whole values are classes) and its classes, 0..K-1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mlpflow.data.dates import (
    PART_LEVELS,
    date_parts,
    day_month_order_unknown,
    is_categorical_part,
    part_codes,
    part_values,
)
from mlpflow.data.prepared import ColumnPlan
from mlpflow.data.scan import NumericStats, Scan, TargetValues, TextStats
from mlpflow.data.text import boolean_value, is_boolean_text, is_number_type, is_temporal
from mlpflow.data.weights import WEIGHT_ACTION
from mlpflow.errors import DataError

if TYPE_CHECKING:
    from mlpflow.config.schema import DataConfig

NUMBER_SHARE = 0.9  # text is numeric (dates) when this share of its cells read as numbers (dates)
ID_SHARE = 0.95  # text is an ID when it has a distinct value on this share of its rows
ID_MIN_LEVELS = 20
FREE_TEXT_WORDS = 3  # an ID whose levels have this many words on average is free text
ROW_NUMBER_NAMES = ("", "Unnamed: 0")  # the index column pandas' to_csv writes first
# A time of day on nearly every row is no ID, but the network cannot use it as it is either.
TIME_OF_DAY = "time of day, add its hour as a column to use it"
DAY_MONTH = "day/month order unknown, write the dates as YYYY-MM-DD to use their parts"
# A name whose last word ends so names an entity (school_id, StoreID, schid, countyfips, fcode)
CODE_ENDINGS = ("id", "code", "fips")
CODE_WORDS = frozenset({"nr", "no", "key", "zip", "zipcode"})  # or is one of these
# Words that end in "id" and name no identifier (days_paid, n_kid, malic_acid); so do "-oid"s
NOT_ID_WORDS = frozenset(
    {
        "acid", "aid", "avid", "bid", "braid", "candid", "fluid", "grid", "humid", "hybrid",
        "invalid", "kid", "laid", "lid", "lipid", "liquid", "maid", "mid", "paid", "prepaid",
        "pyramid", "raid", "rapid", "rid", "rigid", "said", "solid", "squid", "stupid", "timid",
        "unpaid", "valid", "vivid",
    }
)  # fmt: skip
WHOLE_NUMBER = re.compile(r"\s*[+-]?\d+(\.0*)?\s*")
MAX_AUTO_CLASSES = 20  # task=auto: an integer target with at most this many values is classes


# >>> Roles


def names_a_code(name: str) -> bool:
    """Whether a column's name reads as an identifier's: its last word (words split at
    non-letters and at camelCase, digits ignored) ends in id, code or fips, or is nr, no, key or
    zip, and is no English word such as paid, kid, acid or steroid. An integer column so named
    holds codes (a school, a person, a store) whose size means nothing: embedded, each code can
    carry its own effect, which a standardized number cannot."""
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+", name)
    last = words[-1].lower() if words else ""
    if last in NOT_ID_WORDS or last.endswith("oid"):
        return False
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
    _check_part_names(plans)
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


def _date_plan(name: str, stats: TextStats, present: int) -> ColumnPlan:
    """A date column: its parts, numbers and categories named; stray text cells missing."""
    parts = date_parts(stats.timed)
    numbers = [part for part in parts if not is_categorical_part(part)]
    categories = [part for part in parts if is_categorical_part(part)]
    action = f"date parts: {', '.join(numbers)}; {', '.join(categories)} as levels"
    strays = present - stats.date_cells
    if strays:
        action += f", {strays} stray cells missing"
    missing = _rows(stats) - stats.date_cells
    return ColumnPlan(name, "date", stats.dtype, len(stats.levels), missing, action, parts)


def _check_part_names(plans: list[ColumnPlan]) -> None:
    """A date part's feature must not share a column's name (`when_year` beside `when`)."""
    names = {plan.name for plan in plans}
    for plan in plans:
        taken = [feature for feature in plan.features if plan.parts and feature in names]
        if taken:
            raise DataError(
                f"date column {plan.name!r} becomes {', '.join(plan.features)}, but the table "
                f"has a column {taken[0]!r}; rename one, or keep {plan.name!r} as it is with "
                f"data.categorical=[{plan.name}] or data.drop=[{plan.name}]"
            )


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
    if stats.dtype != "dictionary" and stats.date_cells >= NUMBER_SHARE * present:
        return _date_plan(name, stats, present)
    unknown_order = day_month_order_unknown(stats.names, NUMBER_SHARE)
    distinct = len(stats.levels) + stats.overflow_rows  # every overflow cell counted distinct
    if distinct >= ID_SHARE * present and len(stats.levels) >= ID_MIN_LEVELS:
        if is_temporal(stats.dtype):
            return _plan(name, stats, "drop", f"dropped: {TIME_OF_DAY} ({distinct} distinct)")
        if unknown_order:
            return _plan(name, stats, "drop", f"dropped: dates, {DAY_MONTH}")
        if _is_free_text(stats.names):
            return _plan(name, stats, "drop", f"dropped: free text ({distinct} distinct)")
        return _plan(name, stats, "drop", f"dropped: ID ({distinct} distinct of {present})")
    if unknown_order:
        return _plan(name, stats, "categorical", f"categorical: dates, {DAY_MONTH}")
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


def _is_free_text(levels: list[str]) -> bool:
    """Sentences rather than codes: FREE_TEXT_WORDS or more words per level, on average."""
    return sum(len(level.split()) for level in levels) >= FREE_TEXT_WORDS * len(levels)


# >>> The planned columns' values, read back from the scratch file


class Columns:
    """The plans of a scanned table, and the planned columns' values read back from the scan's
    scratch file a chunk at a time: numbers for the numeric features (continuous ones first: the
    numeric columns and the date columns' number parts; then the booleans; NaN where missing)
    and level codes for the categorical ones (categorical columns, date columns' category
    parts). `sources` maps each feature to the raw column it comes from."""

    def __init__(self, scan: Scan, plans: list[ColumnPlan]) -> None:
        self.plans = plans
        self._raw = scan.raw
        continuous: list[tuple[str, Reader]] = []
        booleans: list[tuple[str, Reader]] = []
        categorical: list[tuple[str, list[str], Reader]] = []
        self.sources: dict[str, str] = {}
        for plan in plans:
            stats = scan.columns[plan.name]
            self.sources.update(dict.fromkeys(plan.features, plan.name))
            if plan.role == "numeric":
                continuous.append((plan.name, _number_reader(stats)))
            elif plan.role == "boolean":
                booleans.append((plan.name, _boolean_reader(stats)))
            elif plan.role == "categorical":
                categorical.append((plan.name, stats.names, _code_reader(stats.slot)))
            elif plan.role == "date":
                for part, feature in zip(plan.parts or (), plan.features, strict=True):
                    if is_categorical_part(part):
                        levels = list(PART_LEVELS[part])
                        categorical.append((feature, levels, _part_codes(stats, part)))
                    else:
                        continuous.append((feature, _part_reader(stats, part)))
        numeric = continuous + booleans
        self.numeric_names = [name for name, _ in numeric]
        self.n_continuous = len(continuous)
        self.categorical_names = [name for name, _, _ in categorical]
        # each categorical feature's levels, in the order of their codes in `chunks`
        self.levels = [levels for _, levels, _ in categorical]
        self._numeric = [read for _, read in numeric]
        self._categorical = [read for _, _, read in categorical]

    def chunks(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first row, numbers [n, numeric features], level codes [n, categorical features]) for
        consecutive chunks of rows; each chunk is only valid until the next."""
        for start, block in self._raw.chunks():
            yield start, self._numbers(block), self._codes(block)

    def _numbers(self, block: np.ndarray) -> np.ndarray:
        out = np.empty((len(block), len(self._numeric)), dtype=np.float64)
        for j, read in enumerate(self._numeric):
            out[:, j] = read(block)
        return out

    def _codes(self, block: np.ndarray) -> np.ndarray:
        """Level codes as int64: -1 where missing, -2 beyond the tracked levels."""
        out = np.empty((len(block), len(self._categorical)), dtype=np.int64)
        for j, read in enumerate(self._categorical):
            out[:, j] = read(block)
        return out


Reader = Callable[[np.ndarray], np.ndarray]  # a block of the scratch file -> one feature


def _slot_reader(slot: int) -> Reader:
    return lambda block: block[:, slot]


def _code_reader(slot: int) -> Reader:
    """A text column's level codes as int64: -1 where missing, -2 (OVERFLOW) kept."""
    return lambda block: np.where(np.isnan(block[:, slot]), -1, block[:, slot]).astype(np.int64)


def _number_reader(stats: NumericStats | TextStats) -> Reader:
    """A numeric column's values, or a text column's cells read as numbers."""
    return _slot_reader(stats.slot if isinstance(stats, NumericStats) else stats.slot + 1)


def _boolean_reader(stats: NumericStats | TextStats) -> Reader:
    """0/1 values as they are (numbers scanned as text for their name: the cells' numbers);
    boolean words by code (missing and overflow cells: NaN)."""
    if isinstance(stats, NumericStats):
        return _slot_reader(stats.slot)
    if is_number_type(stats.dtype):
        return _slot_reader(stats.slot + 1)
    lookup = np.array([boolean_value(level) for level in stats.names] + [np.nan])

    def read(block: np.ndarray) -> np.ndarray:
        codes = block[:, stats.slot]
        codes = np.where(np.isnan(codes) | (codes < 0), len(lookup) - 1, codes)
        return lookup[codes.astype(np.int64)]

    return read


def _part_reader(stats: TextStats, part: str) -> Reader:
    """A number part of a date column's cells (NaN where no date)."""
    return lambda block: part_values(block[:, stats.slot + 2], part)


def _part_codes(stats: TextStats, part: str) -> Reader:
    """A category part of a date column's cells as level codes (-1 where no date)."""
    return lambda block: part_codes(block[:, stats.slot + 2], part)


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
