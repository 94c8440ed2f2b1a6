"""The scan: one pass over the source's record batches.

It appends the raw feature values to a float64 scratch file (`RowFile`) and keeps only what
validation needs, one small value per row (NaN/inf flags, a row hash for duplicates, the target)
plus per-column counts, so memory does not grow with the table's width x length. float64 keeps
the values exactly as read: statistics are those of the data, not of a float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpflow.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

    from mlpflow.data.arrays import RowFile
    from mlpflow.data.sources import TableSource

RAW_FILE = ".raw-features.f64"  # the scratch copy of the raw values, in the temporary out dir


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


@dataclass
class Scan:
    """What one pass over the source's batches keeps, besides the raw values in a RowFile."""

    rows: int
    bad_counts: np.ndarray  # NaN/inf cells per feature column
    bad_rows: np.ndarray  # bool per row: a NaN/inf feature
    row_hashes: np.ndarray  # uint64 per row, of the feature values
    target: TargetValues


def scan_table(table: TableSource, raw: RowFile) -> Scan:
    """One pass over the source; may raise SchemaChanged (start over)."""
    width = len(table.feature_names)
    bad_counts = np.zeros(width, dtype=np.int64)
    bad_rows: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    targets: list[pa.Array] = []
    for batch in table.batches():
        block = np.empty((batch.num_rows, width), dtype=np.float64)
        row_hashes = np.full(batch.num_rows, HASH_SEED, dtype=np.uint64)
        for j in range(width):
            column = float64_values(batch.column(j))
            block[:, j] = column
            mix_hash(row_hashes, canonical_bits(column))  # a hash of each row's values
        hashes.append(row_hashes)
        bad = ~np.isfinite(block)
        bad_counts += bad.sum(axis=0)
        bad_rows.append(bad.any(axis=1))
        block[bad] = np.nan  # inf counts as missing from here on
        raw.append(block)
        targets.append(batch.column(width))
    raw.finish()
    target = collect_target(table.target_name, table.target_type, targets)
    return Scan(
        rows=raw.rows,
        bad_counts=bad_counts,
        bad_rows=concat(bad_rows, bool),
        row_hashes=concat(hashes, np.uint64),
        target=target,
    )


def non_numeric_columns(table: TableSource) -> list[str]:
    kinds = zip(table.feature_names, table.feature_types, strict=True)
    return [name for name, kind in kinds if not is_numeric(kind)]


def concat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def is_numeric(kind: pa.DataType) -> bool:
    """What pandas calls numeric: integers, floats, booleans; all-missing columns too."""
    import pyarrow as pa

    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
    )


def dtype_name(kind: pa.DataType, has_missing: bool) -> str:
    """The numpy dtype of the column, pandas-style: integers (booleans) with missing values are
    float64 (pandas: object, which prepare used to reject as non-numeric)."""
    import pyarrow as pa

    integral = pa.types.is_integer(kind) or pa.types.is_boolean(kind)
    if pa.types.is_null(kind) or (integral and has_missing):
        return "float64"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_floating(kind):
        return f"float{kind.bit_width}"
    if pa.types.is_integer(kind):
        return f"{'u' if pa.types.is_unsigned_integer(kind) else ''}int{kind.bit_width}"
    return str(kind)


def float64_values(array: pa.Array) -> np.ndarray:
    """A numeric or boolean Arrow column as float64, NaN where missing (no copy when it can)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if array.type != pa.float64():
        array = pc.cast(array, pa.float64(), safe=False)  # int64 beyond 2**53 rounds
    return arrow_values(array, np.float64, np.nan)


def arrow_values(array: pa.Array, dtype: Any, fill: float) -> np.ndarray:
    """A primitive Arrow array's values as numpy (a view when nothing is null), `fill` for nulls."""
    import pyarrow.compute as pc

    if array.null_count:
        array = pc.fill_null(array, fill)
    return array.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


HASH_SEED = np.uint64(0x243F6A8885A308D3)

HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def canonical_bits(values: np.ndarray) -> np.ndarray:
    """float64 -> uint64 bits, with -0.0 as 0.0 and one NaN (equal values, equal bits)."""
    values = values + 0.0  # -0.0 + 0.0 == +0.0
    values[np.isnan(values)] = np.nan
    return values.view(np.uint64)


def mix_hash(h: np.ndarray, bits: np.ndarray) -> np.ndarray:
    h ^= bits
    h *= HASH_MULTIPLIER  # wraps around: uint64 arithmetic modulo 2**64
    h ^= h >> np.uint64(32)
    return h


def count_duplicates(row_hashes: np.ndarray, target_keys: np.ndarray) -> int:
    """Rows equal to an earlier row, features and target (pandas' `duplicated().sum()`).

    Mixes the target into `row_hashes` and sorts them, in place (no copy of 8 bytes a row).

    Counted on 64-bit row hashes: two different rows collide with probability 2**-64, so a
    table of n rows reports a duplicate that is none with probability about n**2 / 2**65
    (3e-6 for 10M rows).
    """
    h = mix_hash(
        mix_hash(row_hashes, target_keys), np.uint64(0)
    )  # in place; a last round: avalanche
    h.sort()
    return int(np.count_nonzero(h[1:] == h[:-1]))


def collect_target(name: str, kind: pa.DataType, parts: list[pa.Array]) -> TargetValues:
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
    return TargetValues(name, "text", shown, None, codes_np, names)
