"""Raw tables: scikit-learn's built-in sets, synthetic data, and the user's CSV or Parquet file.

Every source is opened as a `TableSource`: a schema (feature names and Arrow types, the target's
name and type) and a stream of Arrow record batches, the feature columns first and the target
last. Files are streamed, no reader holds the whole table; the built-in and synthetic sets are
small and made in memory, then cut into the same record batches, so prepare has one code path
for every source and every size. Sources check what concerns the file (it exists, is readable,
has rows and distinct column names, the target among them); checking the values is prepare's job.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import csv

from mlpflow.config.schema import DATASETS
from mlpflow.data.sniff import sniff_file
from mlpflow.data.text import DEFAULT_FORMAT, NA_VALUES, TextFormat
from mlpflow.errors import DataError, first_line

if TYPE_CHECKING:
    from mlpflow.config.schema import DataConfig

BUILTIN_TASKS = {name: task for name, task in DATASETS.items() if task is not None}
MEMORY_BATCH_ROWS = 65536
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
CSV_BLOCK_BYTES = 4 << 20  # bytes of CSV text per record batch (and for type inference)
MAX_CSV_BLOCK_BYTES = 1 << 30  # blocks grow (x4) up to this when a single row is longer
PARQUET_BATCH_ROWS = 65536
PARQUET_BUFFER_BYTES = 1 << 20
# Arrow names the row when it reads on one thread (one core, or OMP_NUM_THREADS=1), not on several.
_CONVERSION_ERROR = re.compile(
    r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to (\w+)"
)


def preview(names: list[str], limit: int = 12) -> str:
    """Comma-separated names, cut after `limit` so that wide tables keep the error one line."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names) - limit} more)"


class SchemaChanged(Exception):
    """A CSV column's type, inferred from the first block, did not fit a later block.

    The column has been widened; whoever iterates `TableSource.batches()` starts over.
    """


class TableSource:
    """A table before validation: its schema and a stream of record batches.

    Each batch holds the feature columns (in `feature_names` order) and then the target column.
    `batches()` may raise `SchemaChanged` (CSV only): the schema was widened, start again.
    """

    feature_names: list[str]
    feature_types: list[pa.DataType]
    target_name: str
    target_type: pa.DataType
    source: dict[str, Any]
    task: str | None  # fixed by a built-in set; None when the config or the data decide
    text_format: TextFormat = DEFAULT_FORMAT  # how text cells write numbers (CSV: the file's)
    notices: Sequence[str] = ()  # what reading it took, said once prepare succeeded

    def batches(self) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError


def open_table(data: DataConfig, seed: int) -> TableSource:
    """Open the table `data` names."""
    if data.name == "csv":
        return open_file(Path(str(data.path)), str(data.target), data.csv)
    if data.name == "synthetic":
        return _make_synthetic(data, seed)
    return _load_builtin(data.name)


# >>> In memory: built-in and synthetic sets


class MemoryTable(TableSource):
    """A float64 feature matrix and a target array, handed out in record batches."""

    def __init__(
        self,
        features: np.ndarray,
        feature_names: list[str],
        target: pa.Array,
        target_name: str,
        source: dict[str, Any],
        task: str | None,
    ) -> None:
        self.features = np.asarray(features, dtype=np.float64)
        self.feature_names = [str(name) for name in feature_names]
        self.feature_types = [pa.float64()] * len(self.feature_names)
        self.target, self.target_name, self.target_type = target, target_name, target.type
        self.source, self.task = source, task

    def batches(self) -> Iterator[pa.RecordBatch]:
        names = [*self.feature_names, self.target_name]
        for start in range(0, len(self.features), MEMORY_BATCH_ROWS):
            block = self.features[start : start + MEMORY_BATCH_ROWS]
            columns = [pa.array(column) for column in block.T]
            target = self.target.slice(start, len(block))
            yield pa.RecordBatch.from_arrays([*columns, target], names=names)


# scikit-learn's datasets are imported when a built-in or synthetic set is made: importing the
# prepare stage stays free of scikit-learn (tests/test_data.py checks it), and a CSV or Parquet
# prepare never loads them (~0.3 s of its start-up, benchmarks/README.md).


def _load_builtin(name: str) -> MemoryTable:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    if BUILTIN_TASKS[name] == "regression":
        target = pa.array(np.asarray(bunch.target, dtype=np.float64))
    else:
        # Keep scikit-learn's class order (breast_cancer: 0 = malignant) with readable names.
        names = pa.array([str(label) for label in bunch.target_names])
        target = pa.DictionaryArray.from_arrays(pa.array(bunch.target, pa.int32()), names)
    return MemoryTable(
        bunch.data, list(bunch.feature_names), target, "target", {"name": name}, BUILTIN_TASKS[name]
    )


def _make_synthetic(data: DataConfig, seed: int) -> MemoryTable:
    from sklearn import datasets

    task = data.task
    n_samples, n_features = int(data.n_samples), int(data.n_features)
    if task == "regression":
        X, y = datasets.make_regression(
            n_samples=n_samples, n_features=n_features, noise=10.0, random_state=seed
        )
    else:
        n_classes = int(data.n_classes or 2)
        try:
            X, y = datasets.make_classification(
                n_samples=n_samples,
                n_features=n_features,
                n_informative=min(n_features, max(2, n_features // 2)),
                n_redundant=0,
                n_classes=n_classes,
                random_state=seed,
            )
        except ValueError as error:  # e.g. too many classes for the informative features
            raise DataError(
                f"data.name=synthetic: {error}; raise data.n_features or lower data.n_classes"
            ) from error
    source = {
        "name": "synthetic",
        "n_samples": n_samples,
        "n_features": n_features,
        "n_classes": None if task == "regression" else int(y.max()) + 1,
    }
    names = [f"f{i}" for i in range(n_features)]
    return MemoryTable(X, names, pa.array(y), "target", source, None)


# >>> Files: CSV and Parquet, streamed


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
    """A Parquet file, read in batches of `PARQUET_BATCH_ROWS`."""

    def __init__(self, path: Path) -> None:
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
    """A CSV file, read with its `TextFormat`: the delimiter, decimal mark and thousands separator
    `data/sniff.py` reads from the file unless `data.csv.*` sets them (a `;`-delimited export with
    decimal commas reads as the spreadsheet showed it).

    Otherwise read as pandas' `read_csv` would read it, as far as prepare can tell: the same
    missing-value markers (`NA_VALUES`), `True`/`False` booleans, numbers with `inf`, a header
    cell left empty named `Unnamed: <i>`. Two differences: a row with fewer fields than the
    header is an error (pandas fills NaN), and so are duplicate column names (pandas renames the
    second `a` to `a.1`). Arrow infers a column's type from the first block (`CSV_BLOCK_BYTES`);
    when a later block does not fit (an integer column with `1.5` further down), the column is
    widened (null -> float64 -> string, int64 -> float64, anything else -> string) and the scan
    restarts (`SchemaChanged`), so the result does not depend on where the odd value sits.
    """

    def __init__(self, path: Path, options: dict[str, str | None] | None = None) -> None:
        self.path = path
        options = options or {}
        marks = {key: options.get(key) for key in ("delimiter", "decimal", "thousands")}
        try:
            self.text_format = sniff_file(path, path.name, **marks)
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
        reader, peeked = self._open()
        position = [*self.feature_names, self.target_name]
        index = [self.names.index(name) for name in position]
        try:
            for batch in itertools.chain(peeked, _guarded(reader, self.path)):
                yield pa.RecordBatch.from_arrays([batch.column(i) for i in index], names=position)
        except pa.ArrowInvalid as error:
            self._widen(error)
            raise SchemaChanged(self.path) from error

    def _widen(self, error: Exception) -> None:
        """Widen the column a conversion error names; re-raise anything else as unreadable."""
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
