"""The target column: read in the scan, then decoded into a task and classes 0..K-1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mlpflow.data.arrow import arrow_values, concat, dtype_name, float64_values, is_numeric
from mlpflow.data.duplicates import canonical_bits
from mlpflow.data.text import DEFAULT_FORMAT, TextFormat, parse_numbers
from mlpflow.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

MAX_AUTO_CLASSES = 20  # task=auto: an integer target with at most this many values is classes


@dataclass
class TargetValues:
    """The target column of every row, as read: float values or codes into `names`."""

    name: str
    kind: str  # "numeric", "bool", "category" (dictionary-encoded) or "text" (anything else)
    dtype: str
    values: np.ndarray | None  # numeric, bool: float64, NaN where missing
    codes: np.ndarray | None  # category, text: int64 into names, -1 where missing
    names: list[str] | None  # category: its categories in order; text: distinct values, sorted

    @property
    def missing(self) -> np.ndarray:
        """NaN/None in any target; ±inf too in a numeric one."""
        if self.kind == "numeric":
            return ~np.isfinite(self.values)
        if self.kind == "bool":
            return np.isnan(self.values)
        return self.codes < 0

    def keys(self) -> np.ndarray:
        """One uint64 per row, equal for equal values (duplicate rows)."""
        if self.values is not None:
            return canonical_bits(self.values)
        return self.codes.astype(np.uint64)


def collect_target(
    name: str, kind: pa.DataType, parts: list[pa.Array], fmt: TextFormat = DEFAULT_FORMAT
) -> TargetValues:
    """The target as read; text whose every value is a number in the file's format `fmt`
    (`1,234.5`) is numbers, as a feature column's would be."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if is_numeric(kind):  # integers, floats, booleans, all missing
        values = concat([float64_values(part) for part in parts], np.float64)
        if pa.types.is_boolean(kind):  # pandas: object when a value is missing
            dtype = "object" if np.isnan(values).any() else "bool"
            return TargetValues(name, "bool", dtype, values, None, None)
        return TargetValues(name, "numeric", dtype_name(kind, False), values, None, None)
    if pa.types.is_dictionary(kind):
        chunked = pa.chunked_array(parts, type=kind).unify_dictionaries()
        dictionary = chunked.chunk(0).dictionary if chunked.num_chunks else pa.array([])
        indices = [pc.cast(chunk.indices, pa.int64()) for chunk in chunked.chunks]
        codes = concat([arrow_values(i, np.int64, -1) for i in indices], np.int64)
        names = [str(value) for value in dictionary.to_pylist()]
        return TargetValues(name, "category", "category", None, codes, names)
    try:
        text = pa.chunked_array(
            [pc.cast(part, pa.large_string()) for part in parts], pa.large_string()
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise DataError(
            f"target column {name!r} of type {kind} cannot be read as class names: {error}"
        ) from error
    distinct = pc.drop_null(pc.unique(text))
    distinct = distinct.take(pc.array_sort_indices(distinct))  # UTF-8 bytes: code point order
    names = distinct.to_pylist()
    codes = pc.index_in(text, value_set=distinct)  # int32, null where missing
    codes_np = concat(
        [arrow_values(c, np.int32, -1).astype(np.int64) for c in codes.chunks], np.int64
    )
    shown = "str" if pa.types.is_string(kind) or pa.types.is_large_string(kind) else str(kind)
    numbers = parse_numbers(names, fmt)
    if shown == "str" and names and np.isfinite(numbers).all():
        values = np.append(numbers, np.nan)[codes_np]  # code -1 (missing): the NaN
        return TargetValues(name, "numeric", "str (numbers)", values, None, None)
    return TargetValues(name, "text", shown, None, codes_np, names)


@dataclass
class Target:
    task: str
    y: np.ndarray  # int64 class indices or float32 values
    classes: list[str] | None


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
