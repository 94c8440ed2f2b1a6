"""Raw tables: scikit-learn's built-in sets, synthetic data, and the user's CSV/Parquet file.

Every source is opened as a `TableSource`: a schema (feature names and Arrow types, the target's
name and type) and a stream of Arrow record batches, the feature columns first and the target
last. CSV and Parquet files are streamed with pyarrow (`pyarrow.csv.open_csv`,
`ParquetFile.iter_batches`): no reader holds the whole table and no pandas frame is built, so a
file far larger than memory prepares. The built-in and synthetic sets are small and made in
memory; they are cut into the same record batches, so that the prepare step
(`mlpflow.data.splits`) has one code path for every source and every size.

Sources check what concerns the file (it exists, is readable, has rows and columns, distinct
column names, the target among them); checking the values is the prepare step's job.

CSV files are read as pandas' `read_csv` would read them, as far as the prepare step can tell:
the same missing-value markers (`NA_VALUES`), `True`/`False` booleans, numbers with `inf`, a
header cell left empty named `Unnamed: <i>`. Two differences: a row with fewer fields than the
header is an error (pandas fills NaN), and so are duplicate column names (pandas renames the
second `a` to `a.1`). Arrow infers a CSV column's type from the first block of the file
(`CSV_BLOCK_BYTES`); when a later block does not fit (an integer column with `1.5` further
down), the column is widened (null -> float64 -> string, int64 -> float64, anything else ->
string) and the scan restarts (`SchemaChanged`), so the result does not depend on where the
odd value sits.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpflow.config import DATASETS, TASKS
from mlpflow.errors import DataError, first_line

if TYPE_CHECKING:
    import pyarrow as pa

BUILTIN_TASKS = {name: task for name, task in DATASETS.items() if task is not None}
DATASET_NAMES = tuple(DATASETS)
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
MISSING = (None, "", "???")  # "???" is OmegaConf's mark for a mandatory value not given
# pandas' default `na_values` (pandas._libs.parsers.STR_NA_VALUES): read as missing in CSV files.
NA_VALUES = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
CSV_BLOCK_BYTES = 4 << 20  # bytes of CSV text per record batch (and for type inference)
MAX_CSV_BLOCK_BYTES = 1 << 30  # blocks grow (x4) up to this when a single row is longer
PARQUET_BATCH_ROWS = 65536
PARQUET_BUFFER_BYTES = 1 << 20
MEMORY_BATCH_ROWS = 65536
_CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+)")


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

    def batches(self) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def settle_types(self) -> None:
        """Read to the end, so that the schema holds every widening a later block needs."""


def check_source_config(data_cfg: Mapping[str, Any]) -> None:
    """Reject a bad `data.name`/`data.task` or missing csv/synthetic keys before loading."""
    name = data_cfg.get("name")
    if name not in DATASET_NAMES:
        raise DataError(f"unknown data.name={name!r}; use one of: {', '.join(DATASET_NAMES)}")
    task = data_cfg.get("task", "auto")
    if task not in (*TASKS, "auto"):
        raise DataError(f"unknown data.task={task!r}; use one of: auto, {', '.join(TASKS)}")
    if name in BUILTIN_TASKS and task not in ("auto", BUILTIN_TASKS[name]):
        raise DataError(
            f"data.name={name} is a {BUILTIN_TASKS[name]} dataset but data.task={task}; "
            f"set data.task={BUILTIN_TASKS[name]}"
        )
    if name == "csv":
        for key, example in (("path", "my_table.csv"), ("target", "label")):
            if data_cfg.get(key) in MISSING:
                raise DataError(
                    f"data.name=csv needs data.{key}; pass data.{key}={example} on the command line"
                )
    if name == "synthetic":
        _check_synthetic(data_cfg)


def _check_int(data_cfg: Mapping[str, Any], key: str, minimum: int = 1) -> None:
    value = data_cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(
            f"data.name=synthetic needs data.{key} as an integer >= {minimum} (got {value!r}); "
            f"set data.{key}=..."
        )


def _check_synthetic(data_cfg: Mapping[str, Any]) -> None:
    task = data_cfg.get("task", "auto")
    if task == "auto":
        raise DataError(
            "data.name=synthetic cannot infer its task; "
            "set data.task=binary, multiclass or regression"
        )
    _check_int(data_cfg, "n_samples")
    _check_int(data_cfg, "n_features")
    if task == "regression":
        return
    n_classes = data_cfg.get("n_classes")
    if task == "binary" and n_classes not in (None, 2):
        raise DataError(f"data.task=binary needs data.n_classes=2 (got {n_classes!r})")
    if task == "multiclass":
        _check_int(data_cfg, "n_classes", minimum=3)


def open_table(data_cfg: Mapping[str, Any], seed: int) -> TableSource:
    """Open the table `data_cfg` names (call `check_source_config` first)."""
    name = data_cfg["name"]
    if name == "csv":
        return open_file(Path(str(data_cfg["path"])), str(data_cfg["target"]))
    if name == "synthetic":
        return _make_synthetic(data_cfg, seed)
    return _load_builtin(name)


# --- in memory: built-in and synthetic sets ----------------------------------------------------


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
        import pyarrow as pa

        self.features = np.asarray(features, dtype=np.float64)
        self.feature_names = [str(name) for name in feature_names]
        self.feature_types = [pa.float64()] * len(self.feature_names)
        self.target, self.target_name, self.target_type = target, target_name, target.type
        self.source, self.task = source, task

    def batches(self) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        names = [*self.feature_names, self.target_name]
        for start in range(0, len(self.features), MEMORY_BATCH_ROWS):
            block = self.features[start : start + MEMORY_BATCH_ROWS]
            columns = [pa.array(column) for column in block.T]
            target = self.target.slice(start, len(block))
            yield pa.RecordBatch.from_arrays([*columns, target], names=names)


def _load_builtin(name: str) -> MemoryTable:
    import pyarrow as pa
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


def _make_synthetic(data_cfg: Mapping[str, Any], seed: int) -> MemoryTable:
    import pyarrow as pa
    from sklearn import datasets

    task = data_cfg["task"]
    n_samples, n_features = int(data_cfg["n_samples"]), int(data_cfg["n_features"])
    if task == "regression":
        X, y = datasets.make_regression(
            n_samples=n_samples, n_features=n_features, noise=10.0, random_state=seed
        )
    else:
        n_classes = int(data_cfg.get("n_classes") or 2)
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


# --- files: CSV and Parquet, streamed ------------------------------------------------------------


def open_file(path: Path, target: str) -> TableSource:
    """Open a CSV or Parquet file for streaming; every failure becomes a one-line DataError."""
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
    table = CsvFile(shown) if suffix == ".csv" else ParquetFile(shown)
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
    def __init__(self, path: Path) -> None:
        self.path = path
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
        parse = csv.ParseOptions(newlines_in_values=True)
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
