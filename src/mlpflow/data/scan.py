"""The scan: one pass over the source's record batches, and what it keeps.

Every feature column lands in a float64 scratch file (`RowFile`): a numeric column as its values,
a text column as three slots, the code of its level (a per-column dictionary, in order of first
appearance), the cell read as a number and the cell read as a date (`mlpflow.data.dates`: per
cell, so a date column unique on every row keeps every date). Besides, the scan keeps what
deciding each column's role needs (missing cells, range, whether it counts rows, its levels and
their counts), a hash per row for duplicates, and the target; memory does not grow with the
table's width x length.
The later passes read the scratch file back in chunks with plain `read`s, not a memory map:
pages of a mapped file count in the process's resident set while mapped, pages a `read` went
through stay in the kernel's page cache only, so a pass over a file larger than memory costs
one chunk of memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlpflow.data.dates import DAY_SECONDS, parse_dates
from mlpflow.data.sources import SchemaChanged, TableSource
from mlpflow.data.text import DEFAULT_FORMAT, TextFormat, level_text, parse_numbers, temporal_text
from mlpflow.errors import DataError

RAW_FILE = ".raw-features.f64"  # the scratch copy of the raw values, in the temporary out dir
CHUNK_BYTES = 16 << 20  # one chunk of rows read back from a RowFile
LEVEL_LIMIT = 100_000  # levels tracked per text column; later new ones share OVERFLOW
OVERFLOW = -2.0  # the code of a level beyond LEVEL_LIMIT (missing cells are NaN)
EXAMPLE_ROWS = 50  # candidates for the model's input example
HASH_SEED = np.uint64(0x243F6A8885A308D3)
HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
TEXT_SLOTS = 3  # a text column's: level code, number, date (seconds since 1970-01-01 UTC)


# >>> The pass


@dataclass
class Scan:
    """What one pass over the source's batches keeps."""

    rows: int
    columns: dict[str, ColumnStats]  # feature columns, in the source's order
    raw: RowFile  # their values, in the slots of `columns`
    row_hashes: np.ndarray  # uint64 per row, of the feature values
    target: TargetValues
    example: dict[str, list[Any]]  # the first EXAMPLE_ROWS cells of each column, as read


def scan_source(table: TableSource, tmp: Path, as_text: set[str]) -> Scan:
    """The scan of `table`, its scratch file in `tmp`; `as_text`: columns scanned as text
    (data.categorical) whatever their type. Starts over after a CSV column was widened
    mid-scan (SchemaChanged); a failed scan leaves no scratch file."""
    while True:
        if not table.feature_names:
            raise DataError(
                f"no feature columns besides the target {table.target_name!r}; add features"
            )
        columns = slot_layout(table, as_text)
        raw = RowFile(tmp / RAW_FILE, slot_count(columns))
        try:
            scan = scan_table(table, raw, columns)
        except BaseException as error:
            raw.remove()
            if not isinstance(error, SchemaChanged):
                raise
        else:
            # Arrow's allocator keeps the freed batches' pages for reuse (~100 MB); later phases
            # would stack their peak on top of them
            pa.default_memory_pool().release_unused()
            return scan


def slot_layout(table: TableSource, as_text: set[str]) -> dict[str, ColumnStats]:
    """Empty stats for each feature column, with its slots in the scratch file."""
    columns: dict[str, ColumnStats] = {}
    slot = 0
    for name, kind in zip(table.feature_names, table.feature_types, strict=True):
        if is_numeric(kind) and name not in as_text:
            columns[name] = NumericStats(str(kind), slot)
            slot += 1
        else:
            columns[name] = TextStats(
                "dictionary" if pa.types.is_dictionary(kind) else str(kind), slot
            )
            slot += TEXT_SLOTS
    return columns


def slot_count(columns: dict[str, ColumnStats]) -> int:
    return sum(1 if isinstance(stats, NumericStats) else TEXT_SLOTS for stats in columns.values())


def scan_table(table: TableSource, raw: RowFile, columns: dict[str, ColumnStats]) -> Scan:
    """One pass over the source; may raise SchemaChanged (start over)."""
    hashes: list[np.ndarray] = []
    targets: list[pa.Array] = []
    width = len(columns)
    example: dict[str, list[Any]] = {name: [] for name in columns}
    for batch in table.batches():
        if raw.rows < EXAMPLE_ROWS:
            _add_example(example, batch.slice(0, EXAMPLE_ROWS - raw.rows))
        block = np.empty((batch.num_rows, raw.width), dtype=np.float64)
        for j, stats in enumerate(columns.values()):
            if isinstance(stats, NumericStats):
                values = float64_values(batch.column(j))
                stats.update(values, raw.rows)
                block[:, stats.slot] = np.where(np.isfinite(values), values, np.nan)
            else:
                cells = stats.update(batch.column(j), table.text_format)
                block[:, stats.slot : stats.slot + TEXT_SLOTS] = np.column_stack(cells)
        row_hashes = np.full(batch.num_rows, HASH_SEED, dtype=np.uint64)
        for slot in range(raw.width):
            mix_hash(row_hashes, canonical_bits(block[:, slot]))
        hashes.append(row_hashes)
        raw.append(block)
        targets.append(batch.column(width))
    raw.finish()
    target = collect_target(table.target_name, table.target_type, targets, table.text_format)
    return Scan(raw.rows, columns, raw, concat(hashes, np.uint64), target, example)


def _add_example(example: dict[str, list[Any]], batch: pa.RecordBatch) -> None:
    """Cells as Python values, NaN and inf as None (meta.json is strict JSON)."""
    for j, name in enumerate(example):
        for cell in batch.column(j).to_pylist():
            if isinstance(cell, float) and not math.isfinite(cell):
                cell = None
            elif not isinstance(cell, str | int | float | bool | None):
                cell = level_text(cell)  # dates and the like: as text, as their levels are
            example[name].append(cell)


# >>> What the scan keeps per column


@dataclass
class NumericStats:
    """A column Arrow read as numbers (or booleans)."""

    dtype: str
    slot: int
    missing: int = 0  # NaN, inf or empty
    low: float = math.inf
    high: float = -math.inf
    integral: bool = True  # every finite value a whole number
    zero_one: bool = True  # every finite value 0 or 1
    counts_rows: list[bool] = field(default_factory=lambda: [True, True])  # == 0..n-1 / 1..n

    def update(self, values: np.ndarray, first_row: int) -> None:
        finite = np.isfinite(values)
        self.missing += int((~finite).sum())
        kept = values[finite]
        if len(kept):
            self.low, self.high = min(self.low, kept.min()), max(self.high, kept.max())
            self.integral = self.integral and bool(np.all(kept == np.round(kept)))
            self.zero_one = self.zero_one and bool(np.all((kept == 0) | (kept == 1)))
        index = np.arange(first_row, first_row + len(values), dtype=np.float64)
        for offset in (0, 1):
            self.counts_rows[offset] = self.counts_rows[offset] and bool(
                np.array_equal(values, index + offset)
            )


@dataclass
class TextStats:
    """A column of text (or a dictionary-encoded or a date/time column): its levels and their
    counts, and how many of its cells read as numbers and as dates."""

    dtype: str
    slot: int  # the codes; slot + 1: the cells read as numbers; slot + 2: as dates
    levels: dict[str, int] = field(default_factory=dict)  # level -> code
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    missing: int = 0
    overflow_rows: int = 0  # cells whose level came after LEVEL_LIMIT others
    number_cells: int = 0  # non-missing cells that read as numbers
    date_cells: int = 0  # non-missing cells that read as dates
    timed: bool = False  # a date cell has a time of day (other than midnight)

    @property
    def names(self) -> list[str]:
        """Levels in code order."""
        return list(self.levels)

    def update(
        self, array: pa.Array, fmt: TextFormat = DEFAULT_FORMAT
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The codes (NaN missing, OVERFLOW), numbers (NaN) and dates (seconds, NaN) of one
        batch's cells; text is read as numbers in the file's format `fmt`."""
        local, indices = _dictionary(array)
        codes = np.array([self._code(value) for value in local] + [math.nan])
        numbers = np.append(parse_numbers(local, fmt), math.nan)
        dates = np.append(parse_dates(local), math.nan)
        # index -1: the NaN
        cell_codes, cell_numbers, cell_dates = codes[indices], numbers[indices], dates[indices]
        self.missing += int((indices < 0).sum())
        self.overflow_rows += int((cell_codes == OVERFLOW).sum())
        self.number_cells += int(np.isfinite(cell_numbers).sum())
        dated = cell_dates[np.isfinite(cell_dates)]
        self.date_cells += len(dated)
        self.timed = self.timed or bool(np.any(dated % DAY_SECONDS))
        seen = cell_codes[cell_codes >= 0].astype(np.int64)
        if len(self.counts) < len(self.levels):
            self.counts = np.pad(self.counts, (0, len(self.levels) - len(self.counts)))
        self.counts += np.bincount(seen, minlength=len(self.counts))
        return cell_codes, cell_numbers, cell_dates

    def _code(self, level: str) -> float:
        code = self.levels.get(level)
        if code is None:
            if len(self.levels) >= LEVEL_LIMIT:
                return OVERFLOW
            code = self.levels[level] = len(self.levels)
        return float(code)


def _dictionary(array: pa.Array) -> tuple[list[str], np.ndarray]:
    """The batch's distinct values as text, and each cell's index into them (-1: missing).
    Dates and times as `temporal_text`: a level by what it means, not how Arrow prints it."""
    if not pa.types.is_dictionary(array.type):
        kind = array.type
        text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
        if not (text or pa.types.is_temporal(kind)):  # dates: encoded as values, see below
            array = pc.cast(array, pa.string())
        array = pc.dictionary_encode(array)
    values = array.dictionary
    local = pc.cast(values, pa.string()).to_pylist()
    if pa.types.is_temporal(values.type):
        local = [temporal_text(value) for value in local]
    indices = pc.fill_null(pc.cast(array.indices, pa.int64()), -1)
    return local, indices.to_numpy(zero_copy_only=False)


ColumnStats = NumericStats | TextStats


# >>> The target, as read


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
    if is_numeric(kind):  # integers, floats, booleans, all missing
        values = concat([float64_values(part) for part in parts], np.float64)
        if pa.types.is_boolean(kind):  # pandas: object when a value is missing
            dtype = "object" if np.isnan(values).any() else "bool"
            return TargetValues(name, "bool", dtype, values, None, None)
        return TargetValues(name, "numeric", dtype_name(kind), values, None, None)
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


# >>> Row hashes: duplicate rows are counted on them, no copy of the rows is kept


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
    h = mix_hash(row_hashes, target_keys)  # in place
    h = mix_hash(h, np.uint64(0))  # a last round mixes the target's bits through
    h.sort()
    return int(np.count_nonzero(h[1:] == h[:-1]))


# >>> The scratch file


class RowFile:
    """Rows of `width` float64 values appended to `path` (C order, no header), one record batch
    at a time, and read back in chunks of `CHUNK_BYTES`."""

    def __init__(self, path: Path, width: int) -> None:
        self.path, self.width, self.rows = path, width, 0
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 (closed by finish())

    def append(self, block: np.ndarray) -> None:
        assert self._file is not None and block.shape[1:] == (self.width,)
        self._file.write(np.ascontiguousarray(block, dtype=np.float64).data)
        self.rows += len(block)

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) for consecutive chunks; each chunk is only valid until the next."""
        self.finish()
        rows_per_chunk = max(1, CHUNK_BYTES // (8 * max(self.width, 1)))
        buffer = np.empty((min(rows_per_chunk, self.rows), self.width), dtype=np.float64)
        with open(self.path, "rb") as file:
            for start in range(0, self.rows, rows_per_chunk):
                block = buffer[: min(rows_per_chunk, self.rows - start)]
                if file.readinto(block.data) != block.nbytes:  # type: ignore[attr-defined]
                    raise OSError(f"{self.path} is shorter than its {self.rows} rows")
                yield start, block

    def remove(self) -> None:
        self.finish()
        self.path.unlink(missing_ok=True)


# >>> Arrow columns as numpy: values, NaN for missing, pandas-style dtype names


def concat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def is_numeric(kind: pa.DataType) -> bool:
    """What pandas calls numeric: integers, floats, booleans; all-missing columns too."""
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
    )


def dtype_name(kind: pa.DataType) -> str:
    """The numpy dtype of a numeric column, pandas-style (all missing: float64)."""
    if pa.types.is_null(kind):
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
    if array.type != pa.float64():
        array = pc.cast(array, pa.float64(), safe=False)  # int64 beyond 2**53 rounds
    return arrow_values(array, np.float64, np.nan)


def arrow_values(array: pa.Array, dtype: Any, fill: float) -> np.ndarray:
    """A primitive Arrow array's values as numpy (a view when nothing is null), `fill` for nulls."""
    if array.null_count:
        array = pc.fill_null(array, fill)
    return array.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
