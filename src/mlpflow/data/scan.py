"""The scan: one pass over the source's record batches.

Every feature column lands in a float64 scratch file (`RowFile`): a numeric column as its values,
a text column as two slots, the code of its level (a per-column dictionary, in order of first
appearance) and the cell read as a number. Besides, the scan keeps what deciding each column's
role needs (missing cells, range, whether it counts rows, its levels and their counts), a hash
per row for duplicates, and the target; memory does not grow with the table's width x length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpflow.data.arrow import concat, float64_values, is_numeric
from mlpflow.data.duplicates import HASH_SEED, canonical_bits, mix_hash
from mlpflow.data.target import TargetValues, collect_target
from mlpflow.data.text import DEFAULT_FORMAT, TextFormat, level_text, parse_numbers, temporal_text

if TYPE_CHECKING:
    import pyarrow as pa

    from mlpflow.data.arrays import RowFile
    from mlpflow.data.sources import TableSource

RAW_FILE = ".raw-features.f64"  # the scratch copy of the raw values, in the temporary out dir
LEVEL_LIMIT = 100_000  # levels tracked per text column; later new ones share OVERFLOW
OVERFLOW = -2.0  # the code of a level beyond LEVEL_LIMIT (missing cells are NaN)
EXAMPLE_ROWS = 50  # candidates for the model's input example


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
    """A column of text (or a dictionary-encoded column): its levels and their counts."""

    dtype: str
    slot: int  # the codes; slot + 1: the cells read as numbers
    levels: dict[str, int] = field(default_factory=dict)  # level -> code
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    missing: int = 0
    overflow_rows: int = 0  # cells whose level came after LEVEL_LIMIT others
    number_cells: int = 0  # non-missing cells that read as numbers

    @property
    def names(self) -> list[str]:
        """Levels in code order."""
        return list(self.levels)

    def update(
        self, array: pa.Array, fmt: TextFormat = DEFAULT_FORMAT
    ) -> tuple[np.ndarray, np.ndarray]:
        """The codes (NaN missing, OVERFLOW) and numbers (NaN) of one batch's cells; text is
        read as numbers in the file's format `fmt`."""
        local, indices = _dictionary(array)
        codes = np.array([self._code(value) for value in local] + [math.nan])
        numbers = np.append(parse_numbers(local, fmt), math.nan)
        cell_codes, cell_numbers = codes[indices], numbers[indices]  # index -1: the NaN
        self.missing += int((indices < 0).sum())
        self.overflow_rows += int((cell_codes == OVERFLOW).sum())
        self.number_cells += int(np.isfinite(cell_numbers).sum())
        seen = cell_codes[cell_codes >= 0].astype(np.int64)
        if len(self.counts) < len(self.levels):
            self.counts = np.pad(self.counts, (0, len(self.levels) - len(self.counts)))
        self.counts += np.bincount(seen, minlength=len(self.counts))
        return cell_codes, cell_numbers

    def _code(self, level: str) -> float:
        code = self.levels.get(level)
        if code is None:
            if len(self.levels) >= LEVEL_LIMIT:
                return OVERFLOW
            code = self.levels[level] = len(self.levels)
        return float(code)


ColumnStats = NumericStats | TextStats


@dataclass
class Scan:
    """What one pass over the source's batches keeps, besides the raw values in a RowFile."""

    rows: int
    columns: dict[str, ColumnStats]  # feature columns, in the source's order
    row_hashes: np.ndarray  # uint64 per row, of the feature values
    target: TargetValues
    example: dict[str, list[Any]]  # the first EXAMPLE_ROWS cells of each column, as read


def slot_layout(table: TableSource, as_text: set[str]) -> dict[str, ColumnStats]:
    """Empty stats for each feature column, with its slots in the scratch file."""
    columns: dict[str, ColumnStats] = {}
    slot = 0
    for name, kind in zip(table.feature_names, table.feature_types, strict=True):
        if is_numeric(kind) and name not in as_text:
            columns[name] = NumericStats(str(kind), slot)
            slot += 1
        else:
            columns[name] = TextStats("dictionary" if _is_dictionary(kind) else str(kind), slot)
            slot += 2
    return columns


def slot_count(columns: dict[str, ColumnStats]) -> int:
    return sum(1 if isinstance(stats, NumericStats) else 2 for stats in columns.values())


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
                block[:, stats.slot], block[:, stats.slot + 1] = stats.update(
                    batch.column(j), table.text_format
                )
        row_hashes = np.full(batch.num_rows, HASH_SEED, dtype=np.uint64)
        for slot in range(raw.width):
            mix_hash(row_hashes, canonical_bits(block[:, slot]))
        hashes.append(row_hashes)
        raw.append(block)
        targets.append(batch.column(width))
    raw.finish()
    target = collect_target(table.target_name, table.target_type, targets, table.text_format)
    return Scan(raw.rows, columns, concat(hashes, np.uint64), target, example)


def _add_example(example: dict[str, list[Any]], batch: pa.RecordBatch) -> None:
    """Cells as Python values, NaN and inf as None (meta.json is strict JSON)."""
    for j, name in enumerate(example):
        for cell in batch.column(j).to_pylist():
            if isinstance(cell, float) and not math.isfinite(cell):
                cell = None
            elif not isinstance(cell, str | int | float | bool | None):
                cell = level_text(cell)  # dates and the like: as text, as their levels are
            example[name].append(cell)


def _is_dictionary(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return pa.types.is_dictionary(kind)


def _dictionary(array: pa.Array) -> tuple[list[str], np.ndarray]:
    """The batch's distinct values as text, and each cell's index into them (-1: missing).
    Dates and times as `temporal_text`: a level by what it means, not how Arrow prints it."""
    import pyarrow as pa
    import pyarrow.compute as pc

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
