"""CSV and Parquet files, streamed with pyarrow: no reader holds the whole table.

A CSV file's delimiter, decimal mark and thousands separator are read from the file (its
`TextFormat`, `mlpflow.data.sniff`) unless `data.csv.*` sets them: a `;`-delimited export with
decimal commas reads as the spreadsheet showed it. Otherwise CSV files are read as pandas'
`read_csv` would read them, as far as prepare can tell: the same missing-value markers
(`NA_VALUES`), `True`/`False` booleans, numbers with `inf`, a header cell left empty named
`Unnamed: <i>`. Two differences: a row with fewer fields than the header is an error (pandas
fills NaN), and so are duplicate column names (pandas renames the second `a` to `a.1`).
Arrow infers a CSV column's type from the first block (`CSV_BLOCK_BYTES`); when a later
block does not fit (an integer column with `1.5` further down), the column is widened
(null -> float64 -> string, int64 -> float64, anything else -> string) and the scan restarts
(`SchemaChanged`), so the result does not depend on where the odd value sits.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpflow.data.sources import SchemaChanged, TableSource, preview
from mlpflow.data.text import DEFAULT_FORMAT, NA_VALUES
from mlpflow.errors import DataError, first_line

if TYPE_CHECKING:
    import pyarrow as pa

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")

__all__ = ["NA_VALUES", "open_file"]
CSV_BLOCK_BYTES = 4 << 20  # bytes of CSV text per record batch (and for type inference)
MAX_CSV_BLOCK_BYTES = 1 << 30  # blocks grow (x4) up to this when a single row is longer
PARQUET_BATCH_ROWS = 65536
PARQUET_BUFFER_BYTES = 1 << 20
_CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+)")


def open_file(path: Path, target: str, options: dict[str, str | None] | None = None) -> TableSource:
    """Open a CSV or Parquet file for streaming; every failure becomes a one-line DataError.
    `options`: data.csv as marks (None: read from the file)."""
    shown = path.expanduser().resolve()
    if not shown.exists():
        raise DataError(f"data file not found: {shown}; check data.path (relative to the cwd)")
    if not shown.is_file():
        raise DataError(f"data.path is not a file: {shown}; point it at a .csv or .parquet file")
    suffix = shown.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(
            f"unsupported data file type {suffix or '(no extension)'!r} for {shown}; "
            f"use one of: {', '.join(TABLE_SUFFIXES)}"
        )
    options = options or {}
    if suffix == ".csv":
        table: CsvFile | ParquetFile = CsvFile(shown, options)
    else:
        table = ParquetFile(shown)
        given = {key: options[key] for key in ("decimal", "thousands") if options.get(key)}
        if given.get("decimal") and "thousands" not in given:  # the other mark, as for CSV
            given["thousands"] = "." if given["decimal"] == "," else ","
        table.text_format = replace(DEFAULT_FORMAT, **given)
    names = table.names
    if not names:
        raise DataError(f"data file has no columns: {shown}")
    if not table.has_rows:
        raise DataError(f"data file has no rows: {shown} (only a header?)")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise DataError(f"{shown} has duplicate column names {duplicated}; rename them")
    if target not in names:
        raise DataError(
            f"target column {target!r} not in {path.name}; set data.target to one of: "
            f"{preview(names)}"
        )
    table.select(target)
    # The path as configured: an absolute one would differ between checkouts of the same data.
    table.source, table.task = {"name": "csv", "path": str(path)}, None
    return table


def cannot_read(shown: Path, error: BaseException) -> DataError:
    return DataError(f"cannot read {shown}: {first_line(error)}; check the file format")


class _FileTable(TableSource):
    """What CSV and Parquet files share: every column but the target is a feature."""

    path: Path
    names: list[str]
    has_rows: bool

    def _types(self) -> list[pa.DataType]:
        raise NotImplementedError

    def select(self, target: str) -> None:
        self.target_name = target
        self._update_schema()

    def _update_schema(self) -> None:
        types = dict(zip(self.names, self._types(), strict=True))
        self.feature_names = [name for name in self.names if name != self.target_name]
        self.feature_types = [types[name] for name in self.feature_names]
        self.target_type = types[self.target_name]


class ParquetFile(_FileTable):
    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        try:
            # pre_buffer (the default) keeps every row group read so far, and without a
            # buffer_size a whole column chunk is read at once: memory would grow with the file.
            self.file = pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
            schema = self.file.schema_arrow
        except Exception as error:  # not Parquet, truncated, unsupported: unusable either way
            raise cannot_read(path, error) from error
        # pandas stores a non-default index as extra columns; read_parquet makes it the index.
        pandas_meta = schema.pandas_metadata or {}
        index = {c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)}
        self.schema = schema
        self.names = [str(name) for name in schema.names if name not in index]
        self.has_rows = self.file.metadata.num_rows > 0

    def _types(self) -> list[pa.DataType]:
        return [self.schema.field(name).type for name in self.names]

    def batches(self) -> Iterator[pa.RecordBatch]:
        columns = [*self.feature_names, self.target_name]
        try:
            yield from self.file.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns)
        except (OSError, ValueError, ArithmeticError, NotImplementedError) as error:
            raise cannot_read(self.path, error) from error


class CsvFile(_FileTable):
    def __init__(self, path: Path, options: dict[str, str | None] | None = None) -> None:
        from mlpflow.data.sniff import sniff_file

        self.path = path
        options = options or {}
        try:
            self.text_format = sniff_file(
                path, path.name, options.get("delimiter"), options.get("decimal"),
                options.get("thousands"),
            )  # fmt: skip
        except OSError as error:
            raise cannot_read(path, error) from error
        if self.text_format != DEFAULT_FORMAT:
            told = [key for key in ("delimiter", "decimal", "thousands") if options.get(key)]
            how = "as set in data.csv" if len(told) == 3 else "read from the file"
            self.notices = [
                f"read {path.name} with {self.text_format.describe()} ({how}; "
                "data.csv.delimiter/decimal/thousands set them)"
            ]
        self.column_types: dict[str, pa.DataType] = {}  # widened after a failed conversion
        self.column_names: list[str] | None = None  # when the header has empty cells
        self.block_bytes = CSV_BLOCK_BYTES  # grown when one row is longer
        reader, peeked = self._open()
        header = reader.schema.names
        if any(name == "" for name in header):  # pandas: "Unnamed: <i>"; reopen with names
            self.column_names = [name or f"Unnamed: {i}" for i, name in enumerate(header)]
            reader, peeked = self._open()
        self.names = list(reader.schema.names)
        self.schema = reader.schema
        self.has_rows = bool(peeked)

    def _open(self) -> tuple[Any, list[pa.RecordBatch]]:
        """A streaming reader, and its batches up to the first one with rows (if any)."""
        import pyarrow as pa

        while True:
            try:
                return self._open_once()
            except pa.ArrowInvalid as error:
                if _straddles(error) and self.block_bytes < MAX_CSV_BLOCK_BYTES:
                    self.block_bytes *= 4
                    continue
                if "Empty CSV file" in str(error):
                    raise DataError(
                        f"data file is empty: {self.path}; it needs a header and data rows"
                    ) from error
                raise cannot_read(self.path, error) from error
            except (OSError, ValueError) as error:
                raise cannot_read(self.path, error) from error

    def _open_once(self) -> tuple[Any, list[pa.RecordBatch]]:
        from pyarrow import csv

        convert = csv.ConvertOptions(
            decimal_point=self.text_format.decimal,
            null_values=list(NA_VALUES),
            true_values=["True", "TRUE", "true"],
            false_values=["False", "FALSE", "false"],
            strings_can_be_null=True,
            column_types=self.column_types,
        )
        read = csv.ReadOptions(
            block_size=self.block_bytes,
            column_names=self.column_names,
            skip_rows=1 if self.column_names else 0,
        )
        parse = csv.ParseOptions(delimiter=self.text_format.delimiter, newlines_in_values=True)
        reader = csv.open_csv(
            self.path, read_options=read, parse_options=parse, convert_options=convert
        )
        peeked = []
        for batch in _guarded(reader, self.path):
            peeked.append(batch)
            if batch.num_rows:
                break
        return reader, peeked

    def _types(self) -> list[pa.DataType]:
        return list(self.schema.types)

    def batches(self) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        reader, peeked = self._open()
        position = [*self.feature_names, self.target_name]
        index = [self.names.index(name) for name in position]
        try:
            for batch in itertools.chain(peeked, _guarded(reader, self.path)):
                yield pa.RecordBatch.from_arrays([batch.column(i) for i in index], names=position)
        except pa.ArrowInvalid as error:
            self._widen(error)
            raise SchemaChanged(self.path) from error

    def settle_types(self) -> None:
        while True:
            try:
                for _ in self.batches():
                    pass
                return
            except SchemaChanged:
                continue

    def _widen(self, error: Exception) -> None:
        """Widen the column a conversion error names; re-raise anything else as unreadable."""
        import pyarrow as pa

        match = _CONVERSION_ERROR.search(str(error))
        if _straddles(error) and self.block_bytes < MAX_CSV_BLOCK_BYTES:
            self.block_bytes *= 4  # a row (a quoted value) longer than a block
        elif match is None:
            raise cannot_read(self.path, error) from error
        else:
            name = self.names[int(match.group(1))]
            current = self.schema.field(name).type
            if pa.types.is_null(current) or pa.types.is_integer(current):
                wider = pa.float64()
            elif pa.types.is_string(current) or pa.types.is_large_string(current):
                raise cannot_read(self.path, error) from error  # e.g. invalid UTF-8
            else:
                wider = pa.string()
            self.column_types[name] = wider
        self.schema = self._open()[0].schema
        self._update_schema()


def _straddles(error: Exception) -> bool:
    return "straddling object" in str(error)


def _guarded(reader: Any, path: Path) -> Iterator[pa.RecordBatch]:
    """The reader's batches; I/O failures become DataError, Arrow's conversion errors pass."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except OSError as error:
            raise cannot_read(path, error) from error
        yield batch
